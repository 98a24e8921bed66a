# The Ruby worker's step handlers: the same three kinds of work as the Rust worker's (services/src/
# handlers.rs), run in the `ruby-worker`'s embedded VM. `Hoptrace.run` is the one entry point the worker
# calls: it parses the step's input, runs the handler under the step timeout, and answers in JSON with the
# handler body's own start and end on the monotonic clock (the worker records them as the `ruby {handler}`
# span), or with the exception it raised.

require "json"

# The worker handles SIGTERM and SIGINT itself (it finishes the steps in hand, then exits): Ruby's own
# handlers would turn them into an exception in whatever handler is running.
trap("TERM", "SYSTEM_DEFAULT")
trap("INT", "SYSTEM_DEFAULT")

module Hoptrace
  MODULUS = 1_000_000_007

  # Raised into a handler that overran the step timeout. Not a StandardError, so a handler's own
  # `rescue => e` does not swallow it.
  class StepTimeout < Exception; end

  module Handlers
    module_function

    def noop(_input)
      {}
    end

    # One step of a mathematical sequence: the square of the sum of the inputs' values, or of
    # `context.value` (default 2) for a first step, modulo a prime.
    def simple_calculation(input)
      inputs = input["inputs"] || {}
      sum =
        if inputs.empty?
          value = input.dig("context", "value")
          if value.nil?
            2
          elsif value.is_a?(Integer) && value >= 0
            value % MODULUS
          else
            raise ArgumentError, "context.value must be a non-negative integer, got #{value.to_json}"
          end
        else
          inputs.values.sum { |result| result["value"].to_i } % MODULUS
        end
      { "value" => sum * sum % MODULUS }
    end

    # A real query, through the worker's database pool: the task's transitions so far.
    def database_query(input)
      transitions, steps_done = Hoptrace.step_transitions(input.fetch("task_uuid"))
      { "transitions" => transitions, "steps_done" => steps_done }
    end
  end

  @lock = Mutex.new
  @deadline = nil
  @caller = Thread.current

  def self.now
    Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
  end

  # One watchdog for every call, rather than Timeout's thread per call (50 µs each here). It runs only
  # when the handler gives up the GVL (at once when it blocks, within Ruby's 100 ms time slice when it
  # computes), so the bound is that precise.
  @watchdog = Thread.new do
    loop do
      sleep 0.005
      @lock.synchronize do
        if @deadline && now > @deadline
          @deadline = nil
          @caller.raise(StepTimeout, "the handler ran past the step timeout")
        end
      end
    end
  end

  def self.run(name, input_json, timeout_seconds)
    started = ended = nil
    begin
      input = JSON.parse(input_json)
      handler = Handlers.method(name)
      @lock.synchronize { @deadline = now + (timeout_seconds * 1e9).to_i }
      begin
        delay = input.dig("context", "handler_delay_ms")
        started = now
        sleep(delay / 1000.0) if delay.is_a?(Numeric) && delay.positive?
        output = handler.call(input)
        ended = now
      ensure
        @lock.synchronize { @deadline = nil }
      end
      JSON.generate({ "ok" => true, "output" => output, "started" => started, "ended" => ended })
    rescue StepTimeout => e
      JSON.generate({ "ok" => false, "timeout" => true, "message" => e.message, "started" => started, "ended" => now })
    rescue Exception => e # rubocop:disable Lint/RescueException -- anything a handler raises fails its step
      JSON.generate({
        "ok" => false,
        "class" => e.class.name,
        "message" => e.message,
        "backtrace" => e.backtrace || [],
        "started" => started,
        "ended" => started && now,
      })
    end
  end
end
