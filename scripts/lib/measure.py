"""Runs a command and prints its wall time and peak RSS (the child's, from wait4) as JSON."""
import json, os, subprocess, sys, time

start = time.monotonic()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL if os.environ.get("QUIET") else None)
_, status, usage = os.wait4(proc.pid, 0)
elapsed = time.monotonic() - start
print(json.dumps({"seconds": round(elapsed, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                  "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "status": os.waitstatus_to_exitcode(status)}))
