//! Stored spans as the analyzer needs them: a struct of arrays grouped by trace, strings interned.
//!
//! Loading reads only the columns the analysis uses, straight from the Arrow arrays polars returns, and
//! keeps only the attributes some rule asks for, so ten million spans fit in a few hundred megabytes.

use std::cell::Cell;
use std::ops::Range;

use hoptrace_otlp::SpanKind;
use hoptrace_store::schema;
use polars::prelude::*;
use polars_arrow::array::{Array, BinaryViewArray, ListArray, PrimitiveArray, Utf8ViewArray, View};

/// Marks an absent attribute or parent.
pub const NONE: u32 = u32::MAX;

/// A table key is a span attribute's name, or one of these prefixes and what follows: an attribute of
/// the span's resource, an attribute of its first event that carries it, or text captured from its first
/// event whose name matches a pattern (see [`crate::config::Part`]).
pub const RESOURCE_PREFIX: &str = "resource:";
pub const EVENT_PREFIX: &str = "event:";
pub const EVENT_TEXT_PREFIX: &str = "event_text:";

/// Strings seen in the spans, each stored once and referred to by number.
#[derive(Default)]
pub struct Interner {
    ids: FxMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub fn resolve(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// The hash map of the analyzer's hot paths (short strings and ids hash in a few instructions). Not
/// resistant to chosen keys: for data the process has already accepted, never as a defence.
pub use rustc_hash::FxHashMap as FxMap;

/// Every span of a time range, grouped by trace: the spans of trace `t` are rows `traces[t]`. Rows outside
/// every trace's range are copies left behind when a trace read in pieces was gathered: go by `traces`.
#[derive(Default)]
pub struct SpanTable {
    pub strings: Interner,
    pub trace_ids: Vec<[u8; 16]>,
    pub traces: Vec<Range<usize>>,
    pub span_id: Vec<u64>,
    /// The parent's span id, 0 for a root.
    pub parent_id: Vec<u64>,
    pub name: Vec<u32>,
    pub kind: Vec<SpanKind>,
    pub service: Vec<u32>,
    /// The process that emitted the span: service name plus `service.instance.id` (or `host.name`).
    pub process: Vec<u32>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
    /// `attributes[k][row]`: the value of attribute `keys[k]`, or [`NONE`].
    pub keys: Vec<String>,
    pub attributes: Vec<Vec<u32>>,
    /// Linked span ids of row `r`: `link_ids[link_offsets[r]..link_offsets[r + 1]]`.
    pub link_offsets: Vec<u32>,
    pub link_ids: Vec<u64>,
    /// For each trace, how many stored traces it was assembled from by joins ([`crate::stitch`]); empty
    /// when none was.
    pub pieces: Vec<u32>,
}

impl SpanTable {
    /// Rows in the columns (see the type's note on rows outside every trace).
    pub fn len(&self) -> usize {
        self.span_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.span_id.is_empty()
    }

    /// Trace number `trace`'s id in hex, as users see trace ids.
    pub fn trace_id_hex(&self, trace: usize) -> String {
        self.trace_ids[trace].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn key_slot(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    pub fn links(&self, row: usize) -> &[u64] {
        &self.link_ids[self.link_offsets[row] as usize..self.link_offsets[row + 1] as usize]
    }

    /// The columns [`SpanTable::from_frame`] reads for `keys`, for a projection pushed into the scan:
    /// the events only when a key reads them.
    pub fn columns(keys: &[String]) -> Vec<&'static str> {
        let mut columns = vec![
            schema::TRACE_ID,
            schema::SPAN_ID,
            schema::PARENT_SPAN_ID,
            schema::NAME,
            schema::KIND,
            schema::SERVICE_NAME,
            schema::START_TIME,
            schema::END_TIME,
            schema::ATTRIBUTES.keys,
            schema::ATTRIBUTES.values,
            schema::RESOURCE_ATTRIBUTES.keys,
            schema::RESOURCE_ATTRIBUTES.values,
            schema::LINK_SPAN_IDS,
        ];
        if keys.iter().any(|k| k.starts_with(EVENT_PREFIX) || k.starts_with(EVENT_TEXT_PREFIX)) {
            columns.push(schema::EVENTS);
        }
        columns
    }

    /// Builds the table from a frame of stored spans, keeping the attributes named in `keys`.
    pub fn from_frame(frame: &mut DataFrame, keys: &[String]) -> PolarsResult<SpanTable> {
        SpanTable::from_frames(std::iter::once(Ok(std::mem::take(frame))), keys)
    }

    /// Builds the table from frames read one after another (a segment at a time), so only a few frames
    /// are in memory beside the table. Three stages, each on its own thread, each going through every
    /// frame in order: reading (polars decodes a segment's columns on its own threads), the columns
    /// without strings (ids, times, trace numbers), and the strings, interned (on this thread). No rows
    /// to merge: when threads built a table each, merging them was a second copy of every column.
    pub fn from_frames(
        frames: impl Iterator<Item = PolarsResult<DataFrame>> + Send,
        keys: &[String],
    ) -> PolarsResult<SpanTable> {
        let (to_traces, for_traces) = std::sync::mpsc::sync_channel::<DataFrame>(1);
        let (to_strings, for_strings) = std::sync::mpsc::sync_channel::<PolarsResult<DataFrame>>(1);
        std::thread::scope(|scope| {
            // A stage that stops (at an error) closes its channel, which stops the reading.
            scope.spawn(move || {
                for frame in frames {
                    match frame {
                        Ok(mut frame) => {
                            frame.align_chunks_par();
                            if to_traces.send(frame.clone()).is_err() || to_strings.send(Ok(frame)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = to_strings.send(Err(e));
                            return;
                        }
                    }
                }
            });
            let traces = scope.spawn(move || -> PolarsResult<TraceColumns> {
                let mut traces = TraceColumns::new();
                for frame in for_traces {
                    for chunk in 0..chunks(&frame)? {
                        traces.append_chunk(&frame, chunk)?;
                    }
                }
                Ok(traces)
            });
            let mut rows = StringColumns::new(keys);
            for frame in for_strings {
                let frame = frame?;
                for chunk in 0..chunks(&frame)? {
                    rows.append_chunk(&frame, chunk)?;
                }
            }
            let traces = traces.join().expect("the table's threads do not panic")?;
            Ok(traces.into_table(rows.table))
        })
    }
}

fn chunks(frame: &DataFrame) -> PolarsResult<usize> {
    Ok(frame.column(schema::TRACE_ID)?.as_materialized_series().chunks().len())
}

/// One trace's span ids, sorted, to resolve parent and link ids to the trace's spans. Reused trace after
/// trace, so looking up a trace costs no allocation.
#[derive(Default)]
pub struct TraceIndex {
    ids: Vec<(u64, u32)>,
    base: usize,
}

impl TraceIndex {
    /// Indexes the spans of `rows`.
    pub fn build(&mut self, t: &SpanTable, rows: Range<usize>) {
        self.base = rows.start;
        self.ids.clear();
        self.ids.extend(rows.map(|r| (t.span_id[r], r as u32)));
        self.ids.sort_unstable();
    }

    /// The row of the span with id `id` in this trace.
    pub fn row(&self, id: u64) -> Option<usize> {
        self.ids.binary_search_by_key(&id, |&(span, _)| span).ok().map(|at| self.ids[at].1 as usize)
    }

    /// The position of that span within the trace (row minus the trace's first row), or [`NONE`].
    pub fn local(&self, id: u64) -> u32 {
        self.row(id).map_or(NONE, |row| (row - self.base) as u32)
    }

    /// Rows that share their span id with the row before them (in id order).
    pub fn duplicates(&self) -> impl Iterator<Item = usize> + '_ {
        self.ids.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| w[1].1 as usize)
    }
}

/// The columns of spans in frame order that need no strings: trace numbers, ids, kinds, times, links.
struct TraceColumns {
    /// Only the columns named above are filled.
    table: SpanTable,
    trace_index: FxMap<u128, u32>,
    /// Runs of consecutive rows of one trace: (trace number, first row, rows). Segments keep a trace's
    /// spans together, so there are about as many runs as traces.
    blocks: Vec<(u32, u32, u32)>,
}

/// The columns of spans in frame order that hold strings, interned: names, services, processes and the
/// attributes rules read.
struct StringColumns {
    /// Only the columns named above are filled.
    table: SpanTable,
    /// The span attributes rules read, with their slots in `table.keys`.
    wanted: Vec<(usize, KeyProbe)>,
    /// The other keys, with their slots.
    elsewhere: Vec<(usize, Field)>,
    /// The resource attributes that tell instances of one service apart, by preference.
    instance_keys: [KeyProbe; 2],
    /// Process ids by (service, instance) string ids: the `service/instance` text is made once per process.
    processes: FxMap<(u32, u32), u32>,
}

fn chunk<'a, A: 'static>(frame: &'a DataFrame, name: &str, i: usize) -> PolarsResult<&'a A> {
    let series = frame.column(name)?.as_materialized_series();
    series.chunks()[i]
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| polars_err!(SchemaMismatch: "column {name} has an unexpected type"))
}

impl TraceColumns {
    fn new() -> TraceColumns {
        let table = SpanTable { link_offsets: vec![0], ..SpanTable::default() };
        TraceColumns { table, trace_index: FxMap::default(), blocks: Vec::new() }
    }

    fn append_chunk(&mut self, frame: &DataFrame, i: usize) -> PolarsResult<()> {
        let trace_ids = chunk::<BinaryViewArray>(frame, schema::TRACE_ID, i)?;
        let span_ids = chunk::<BinaryViewArray>(frame, schema::SPAN_ID, i)?;
        let parents = chunk::<BinaryViewArray>(frame, schema::PARENT_SPAN_ID, i)?;
        let kinds = chunk::<PrimitiveArray<u8>>(frame, schema::KIND, i)?;
        let starts = chunk::<PrimitiveArray<u64>>(frame, schema::START_TIME, i)?;
        let ends = chunk::<PrimitiveArray<u64>>(frame, schema::END_TIME, i)?;
        let links = chunk::<ListArray<i64>>(frame, schema::LINK_SPAN_IDS, i)?;
        let link_span_ids = links
            .values()
            .as_any()
            .downcast_ref::<BinaryViewArray>()
            .ok_or_else(|| polars_err!(SchemaMismatch: "link span ids are not binary"))?;

        let t = &mut self.table;
        let rows = trace_ids.len();
        for column in [&mut t.span_id, &mut t.parent_id] {
            column.reserve(rows);
        }
        for column in [&mut t.start, &mut t.end] {
            column.reserve(rows);
        }
        t.kind.reserve(rows);
        t.link_offsets.reserve(rows);
        // Segments hold a trace's spans together (the collector sorts a flush by trace), so most rows
        // belong to the trace of the row before and need no lookup.
        let mut last_trace: Option<(u128, u32)> = None;
        for row in 0..rows {
            let trace: [u8; 16] = trace_ids.value(row).try_into().unwrap_or([0; 16]);
            let key = u128::from_ne_bytes(trace);
            let trace_no = match last_trace {
                Some((last, number)) if last == key => number,
                _ => {
                    let next = self.trace_index.len() as u32;
                    let number = *self.trace_index.entry(key).or_insert(next);
                    if number == next {
                        t.trace_ids.push(trace);
                    }
                    number
                }
            };
            last_trace = Some((key, trace_no));
            match self.blocks.last_mut() {
                Some((trace, _, len)) if *trace == trace_no => *len += 1,
                _ => self.blocks.push((trace_no, t.span_id.len() as u32, 1)),
            }
            t.span_id.push(id64(span_ids.value(row)));
            t.parent_id.push(if parents.is_valid(row) { id64(parents.value(row)) } else { 0 });
            t.kind.push(SpanKind::from_code(kinds.value(row)));
            t.start.push(starts.value(row) as i64);
            t.end.push(ends.value(row) as i64);
            let (from, to) = links.offsets().start_end(row);
            for link in from..to {
                t.link_ids.push(id64(link_span_ids.value(link)));
            }
            t.link_offsets.push(t.link_ids.len() as u32);
        }
        Ok(())
    }
}

impl StringColumns {
    fn new(keys: &[String]) -> StringColumns {
        let table = SpanTable { keys: keys.to_vec(), attributes: vec![Vec::new(); keys.len()], ..SpanTable::default() };
        let (mut wanted, mut elsewhere) = (Vec::new(), Vec::new());
        for (slot, key) in keys.iter().enumerate() {
            match Field::parse(key) {
                Field::Attribute(probe) => wanted.push((slot, probe)),
                field => elsewhere.push((slot, field)),
            }
        }
        StringColumns {
            table,
            wanted,
            elsewhere,
            instance_keys: [KeyProbe::new("service.instance.id"), KeyProbe::new("host.name")],
            processes: FxMap::default(),
        }
    }

    fn append_chunk(&mut self, frame: &DataFrame, i: usize) -> PolarsResult<()> {
        let names = chunk::<Utf8ViewArray>(frame, schema::NAME, i)?;
        let services = chunk::<Utf8ViewArray>(frame, schema::SERVICE_NAME, i)?;
        let attributes = AttributeLists::new(frame, schema::ATTRIBUTES, i)?;
        let resource = AttributeLists::new(frame, schema::RESOURCE_ATTRIBUTES, i)?;

        let t = &mut self.table;
        let rows = names.len();
        for column in [&mut t.name, &mut t.service, &mut t.process] {
            column.reserve(rows);
        }
        for column in t.attributes.iter_mut() {
            column.reserve(rows);
        }
        let events = match self.elsewhere.iter().any(|(_, f)| f.reads_events()) {
            true => Some(Events::new(frame, i)?),
            false => None,
        };
        // Views are positions in this chunk's buffers: what the probes learnt of the last chunk's is void.
        for probe in self.wanted.iter().map(|(_, p)| p).chain(&self.instance_keys) {
            probe.forget();
        }
        for (_, field) in &self.elsewhere {
            field.forget();
        }
        let mut name_ids = ViewIds::new(names);
        let mut service_ids = ViewIds::new(services);
        let mut value_ids = ViewIds::new(attributes.value_strings);
        let mut instance_ids = ViewIds::new(resource.value_strings);
        for row in 0..rows {
            t.name.push(name_ids.id(row, &mut t.strings));
            let service_id = service_ids.id(row, &mut t.strings);
            let instance = self.instance_keys.iter().find_map(|key| resource.value_index(row, key));
            let process_id = match instance.map(|i| instance_ids.id(i, &mut t.strings)) {
                None => service_id,
                Some(instance_id) => *self.processes.entry((service_id, instance_id)).or_insert_with(|| {
                    let text = format!("{}/{}", t.strings.resolve(service_id), t.strings.resolve(instance_id));
                    t.strings.intern(&text)
                }),
            };
            t.service.push(service_id);
            t.process.push(process_id);
            for column in t.attributes.iter_mut() {
                column.push(NONE);
            }
            // One pass over the span's attributes, keeping those some rule reads.
            let (from, to) = attributes.keys.offsets().start_end(row);
            let value_base = attributes.values.offsets().start_end(row).0;
            for i in from..to {
                let Some(&(slot, _)) = self.wanted.iter().find(|(_, k)| k.matches(attributes.key_strings, i)) else {
                    continue;
                };
                let value = value_base + (i - from);
                if attributes.value_strings.is_valid(value) {
                    *t.attributes[slot].last_mut().expect("pushed above") = value_ids.id(value, &mut t.strings);
                }
            }
            for (slot, field) in &self.elsewhere {
                let value = match field {
                    Field::Attribute(_) => None,
                    Field::Resource(key) => {
                        resource.value_index(row, key).map(|v| t.strings.intern(resource.value_strings.value(v)))
                    }
                    Field::Event(key) => events.as_ref().and_then(|e| e.value(row, key)).map(|v| t.strings.intern(v)),
                    Field::EventText(pattern) => {
                        events.as_ref().and_then(|e| e.captured(row, pattern)).map(|v| t.strings.intern(v))
                    }
                };
                if let Some(value) = value {
                    *t.attributes[*slot].last_mut().expect("pushed above") = value;
                }
            }
        }
        Ok(())
    }
}

/// Where a key other than a span attribute is read.
enum Field {
    Attribute(KeyProbe),
    Resource(KeyProbe),
    Event(KeyProbe),
    EventText(regex::Regex),
}

impl Field {
    fn parse(key: &str) -> Field {
        if let Some(key) = key.strip_prefix(RESOURCE_PREFIX) {
            return Field::Resource(KeyProbe::new(key));
        }
        if let Some(key) = key.strip_prefix(EVENT_PREFIX) {
            return Field::Event(KeyProbe::new(key));
        }
        if let Some(pattern) = key.strip_prefix(EVENT_TEXT_PREFIX) {
            // Checked when the configuration was read; a pattern that cannot compile matches nothing.
            let never = || regex::Regex::new("[^\\s\\S]").expect("a valid pattern");
            return Field::EventText(regex::Regex::new(pattern).unwrap_or_else(|_| never()));
        }
        Field::Attribute(KeyProbe::new(key))
    }

    fn reads_events(&self) -> bool {
        matches!(self, Field::Event(_) | Field::EventText(_))
    }

    fn forget(&self) {
        if let Field::Attribute(p) | Field::Resource(p) | Field::Event(p) = self {
            p.forget();
        }
    }
}

/// One chunk's span events: each span's event names and attributes.
struct Events<'a> {
    spans: &'a ListArray<i64>,
    names: &'a Utf8ViewArray,
    attributes: AttributeLists<'a>,
}

impl<'a> Events<'a> {
    fn new(frame: &'a DataFrame, i: usize) -> PolarsResult<Events<'a>> {
        let spans = chunk::<ListArray<i64>>(frame, schema::EVENTS, i)?;
        let structs = spans
            .values()
            .as_any()
            .downcast_ref::<polars_arrow::array::StructArray>()
            .ok_or_else(|| polars_err!(SchemaMismatch: "events are not structs"))?;
        let field = |name: &str| {
            let at = structs.fields().iter().position(|f| f.name.as_str() == name);
            at.map(|at| &structs.values()[at]).ok_or_else(|| polars_err!(SchemaMismatch: "events have no {name}"))
        };
        let list = |name: &str| -> PolarsResult<&'a ListArray<i64>> {
            field(name)?.as_any().downcast_ref().ok_or_else(|| polars_err!(SchemaMismatch: "event {name} is no list"))
        };
        let names = field(schema::EVENT_NAME)?
            .as_any()
            .downcast_ref::<Utf8ViewArray>()
            .ok_or_else(|| polars_err!(SchemaMismatch: "event names are not text"))?;
        let attributes = AttributeLists::from_lists(list(schema::ATTRIBUTES.keys)?, list(schema::ATTRIBUTES.values)?)?;
        Ok(Events { spans, names, attributes })
    }

    fn of(&self, row: usize) -> std::ops::Range<usize> {
        let (from, to) = self.spans.offsets().start_end(row);
        from..to
    }

    /// The value of `key` on the first of the span's events that carries it.
    fn value(&self, row: usize, key: &KeyProbe) -> Option<&'a str> {
        self.of(row)
            .find_map(|event| self.attributes.value_index(event, key))
            .map(|v| self.attributes.value_strings.value(v))
    }

    /// What `pattern` captures in the first of the span's event names it matches.
    fn captured(&self, row: usize, pattern: &regex::Regex) -> Option<&'a str> {
        self.of(row).find_map(|event| {
            let captures = pattern.captures(self.names.value(event))?;
            captures.get(1).or_else(|| captures.get(0)).map(|m| m.as_str())
        })
    }
}

impl TraceColumns {
    /// The table of these columns and `strings`' (the same rows), each trace's rows contiguous. Segments keep a trace's spans together, so nearly every
    /// trace is one run of rows already and stays where it is. A trace whose spans came in several runs
    /// (written across flushes) has its rows copied, together, to the end of the table, where its range
    /// points; the scattered originals stay behind, outside every trace's range.
    fn into_table(self, strings: SpanTable) -> SpanTable {
        let TraceColumns { table: ids, blocks, .. } = self;
        let mut table = SpanTable {
            trace_ids: ids.trace_ids,
            span_id: ids.span_id,
            parent_id: ids.parent_id,
            kind: ids.kind,
            start: ids.start,
            end: ids.end,
            link_offsets: ids.link_offsets,
            link_ids: ids.link_ids,
            ..strings
        };
        let mut traces: Vec<Range<usize>> = vec![0..0; table.trace_ids.len()];
        let mut split = vec![false; traces.len()];
        let mut seen = vec![false; traces.len()];
        for &(trace, row, len) in &blocks {
            let trace = trace as usize;
            split[trace] |= seen[trace];
            seen[trace] = true;
            traces[trace] = row as usize..(row + len) as usize;
        }
        let mut scattered: Vec<(u32, u32, u32)> =
            blocks.into_iter().filter(|&(trace, ..)| split[trace as usize]).collect();
        scattered.sort_by_key(|&(trace, ..)| trace); // stable: a trace's runs stay in reading order
        for runs in scattered.chunk_by(|a, b| a.0 == b.0) {
            let from = table.len();
            for &(_, row, len) in runs {
                table.append_rows(row as usize..(row + len) as usize);
            }
            traces[runs[0].0 as usize] = from..table.len();
        }
        table.traces = traces;
        table
    }
}

impl SpanTable {
    /// Whether trace `trace` was assembled from several stored traces.
    pub fn stitched(&self, trace: usize) -> bool {
        self.pieces.get(trace).is_some_and(|&p| p > 1)
    }

    /// Keeps the rows for which `keep` holds, each trace's in order, and the traces left with any. Rows
    /// outside every trace's range go too.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut order: Vec<usize> = (0..self.traces.len()).collect();
        order.sort_by_key(|&t| self.traces[t].start);
        // Rows move down only (traces in row order), so the columns are compacted in place.
        let mut to = 0;
        let mut links = Vec::with_capacity(self.link_ids.len());
        let mut link_offsets = Vec::with_capacity(self.link_offsets.len());
        link_offsets.push(0);
        let mut ranges = vec![0..0; self.traces.len()];
        for t in order {
            let from = to;
            for row in self.traces[t].clone().filter(|&r| keep(r)) {
                self.span_id[to] = self.span_id[row];
                self.parent_id[to] = self.parent_id[row];
                self.name[to] = self.name[row];
                self.kind[to] = self.kind[row];
                self.service[to] = self.service[row];
                self.process[to] = self.process[row];
                self.start[to] = self.start[row];
                self.end[to] = self.end[row];
                for column in &mut self.attributes {
                    column[to] = column[row];
                }
                links.extend_from_slice(
                    &self.link_ids[self.link_offsets[row] as usize..self.link_offsets[row + 1] as usize],
                );
                link_offsets.push(links.len() as u32);
                to += 1;
            }
            ranges[t] = from..to;
        }
        for column in [&mut self.span_id, &mut self.parent_id] {
            column.truncate(to);
        }
        for column in [&mut self.name, &mut self.service, &mut self.process] {
            column.truncate(to);
        }
        self.kind.truncate(to);
        self.start.truncate(to);
        self.end.truncate(to);
        for column in &mut self.attributes {
            column.truncate(to);
        }
        self.link_ids = links;
        self.link_offsets = link_offsets;
        let kept: Vec<bool> = ranges.iter().map(|r| !r.is_empty()).collect();
        let mut k = kept.iter();
        self.trace_ids.retain(|_| *k.next().expect("one per trace"));
        if !self.pieces.is_empty() {
            let mut k = kept.iter();
            self.pieces.retain(|_| *k.next().expect("one per trace"));
        }
        self.traces = ranges.into_iter().filter(|r| !r.is_empty()).collect();
    }

    /// Appends a copy of `rows` at the end of every column.
    pub(crate) fn append_rows(&mut self, rows: Range<usize>) {
        self.span_id.extend_from_within(rows.clone());
        self.parent_id.extend_from_within(rows.clone());
        self.name.extend_from_within(rows.clone());
        self.kind.extend_from_within(rows.clone());
        self.service.extend_from_within(rows.clone());
        self.process.extend_from_within(rows.clone());
        self.start.extend_from_within(rows.clone());
        self.end.extend_from_within(rows.clone());
        for column in &mut self.attributes {
            column.extend_from_within(rows.clone());
        }
        for row in rows {
            let links = self.link_offsets[row] as usize..self.link_offsets[row + 1] as usize;
            self.link_ids.extend_from_within(links);
            self.link_offsets.push(self.link_ids.len() as u32);
        }
    }
}

/// A span's 8-byte id as a number (big-endian, so it prints as the hex id does).
fn id64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// One chunk of an attribute set's parallel key and value lists.
struct AttributeLists<'a> {
    keys: &'a ListArray<i64>,
    values: &'a ListArray<i64>,
    key_strings: &'a Utf8ViewArray,
    value_strings: &'a Utf8ViewArray,
}

impl<'a> AttributeLists<'a> {
    fn new(frame: &'a DataFrame, set: schema::AttributeColumns, i: usize) -> PolarsResult<Self> {
        Self::from_lists(chunk::<ListArray<i64>>(frame, set.keys, i)?, chunk::<ListArray<i64>>(frame, set.values, i)?)
    }

    fn from_lists(keys: &'a ListArray<i64>, values: &'a ListArray<i64>) -> PolarsResult<Self> {
        let strings = |list: &'a ListArray<i64>| {
            list.values()
                .as_any()
                .downcast_ref::<Utf8ViewArray>()
                .ok_or_else(|| polars_err!(SchemaMismatch: "attribute lists are not text"))
        };
        Ok(AttributeLists { keys, values, key_strings: strings(keys)?, value_strings: strings(values)? })
    }

    /// Where in `value_strings` row `row`'s value of `key` is, if it has one.
    fn value_index(&self, row: usize, key: &KeyProbe) -> Option<usize> {
        let (from, to) = self.keys.offsets().start_end(row);
        let at = (from..to).position(|i| key.matches(self.key_strings, i))?;
        let value = self.values.offsets().start_end(row).0 + at;
        self.value_strings.is_valid(value).then_some(value)
    }
}

/// The interned ids of one array's strings, remembered by view: within an array equal views are equal
/// strings (a dictionary-encoded column decodes to repeated views), so a string seen before costs a
/// lookup of its 16-byte view instead of hashing and comparing its text.
struct ViewIds<'a> {
    strings: &'a Utf8ViewArray,
    /// The last view seen in each of a few slots: a column's handful of frequent strings are found here
    /// with one comparison, before the map.
    recent: [(u128, u32); 64],
    ids: FxMap<u128, u32>,
}

impl<'a> ViewIds<'a> {
    /// Past this many distinct views the column is not repetitive: start over rather than grow.
    const LIMIT: usize = 1 << 14;

    fn new(strings: &'a Utf8ViewArray) -> Self {
        // A zero view is the empty string's: the empty slots cannot match any other.
        ViewIds { strings, recent: [(0, NONE); 64], ids: FxMap::default() }
    }

    fn id(&mut self, i: usize, interner: &mut Interner) -> u32 {
        let view = self.strings.views()[i].as_u128();
        let folded = (view as u64) ^ ((view >> 64) as u64);
        let slot = (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
        if self.recent[slot].0 == view && self.recent[slot].1 != NONE {
            return self.recent[slot].1;
        }
        let id = match self.ids.get(&view) {
            Some(&id) => id,
            None => {
                if self.ids.len() >= Self::LIMIT {
                    self.ids.clear();
                }
                let id = interner.intern(self.strings.value(i));
                self.ids.insert(view, id);
                id
            }
        };
        self.recent[slot] = (view, id);
        id
    }
}

/// An attribute key to look for in string views. Most other keys differ from it in the view alone
/// (length and first bytes, or the whole of a key of up to 12 bytes), so they are passed over without
/// reading their bytes.
struct KeyProbe {
    text: String,
    view: View,
    /// The view of a longer key found last in the current array: a dictionary-encoded page repeats it, and
    /// a repeat needs no comparison of the text. 0 (no view of a long string) when none.
    found: Cell<u128>,
}

impl KeyProbe {
    fn new(text: &str) -> KeyProbe {
        KeyProbe { text: text.to_owned(), view: View::new_from_bytes(text.as_bytes(), 0, 0), found: Cell::new(0) }
    }

    /// Whether string `i` of `strings` is this key. The strings must be those of the array seen last, or
    /// [`KeyProbe::forget`] called in between.
    fn matches(&self, strings: &Utf8ViewArray, i: usize) -> bool {
        let view = strings.views()[i];
        if self.view.length <= View::MAX_INLINE_SIZE {
            return view.as_u128() == self.view.as_u128();
        }
        if view.length != self.view.length || view.prefix != self.view.prefix {
            return false;
        }
        if view.as_u128() == self.found.get() {
            return true;
        }
        let found = strings.value(i) == self.text;
        if found {
            self.found.set(view.as_u128());
        }
        found
    }

    /// Forgets the views seen so far, before looking at another array.
    fn forget(&self) {
        self.found.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace whose spans arrive in two runs (here in two frames, another trace between them) is
    /// gathered at the end of the table, its links with it; the other traces stay where they were read.
    #[test]
    fn a_trace_read_in_pieces_is_gathered_in_one_range() {
        use hoptrace_otlp::{Origin, SpanRow};
        use opentelemetry_proto::tonic::trace::v1::span::Link;
        let origin = std::sync::Arc::new(Origin { service_name: "svc".into(), ..Default::default() });
        let span = |trace: u8, span: u8, links: &[u8]| SpanRow {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: format!("span {span}"),
            kind: 1,
            start_time_unix_nano: u64::from(span),
            end_time_unix_nano: u64::from(span) + 10,
            status_code: 0,
            status_message: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: links
                .iter()
                .map(|&l| Link { trace_id: vec![trace; 16], span_id: vec![l; 8], ..Default::default() })
                .collect(),
            dropped: Default::default(),
            origin: std::sync::Arc::clone(&origin),
        };
        let first = hoptrace_store::to_frame(&[span(1, 1, &[]), span(1, 2, &[1]), span(2, 3, &[])]).unwrap();
        let second = hoptrace_store::to_frame(&[span(1, 4, &[1, 2]), span(3, 5, &[]), span(3, 6, &[5])]).unwrap();
        let table = SpanTable::from_frames([Ok(first), Ok(second)].into_iter(), &[]).unwrap();

        let trace = |t: usize| -> Vec<(u64, Vec<u64>)> {
            table.traces[t]
                .clone()
                .map(|r| (table.span_id[r] & 0xff, table.links(r).iter().map(|l| l & 0xff).collect()))
                .collect()
        };
        assert_eq!(table.trace_ids, [[1; 16], [2; 16], [3; 16]]);
        assert_eq!(trace(0), [(1, vec![]), (2, vec![1]), (4, vec![1, 2])]);
        assert_eq!(trace(1), [(3, vec![])]);
        assert_eq!(trace(2), [(5, vec![]), (6, vec![5])]);
        assert_eq!(table.traces, [6..9, 2..3, 4..6], "trace 1 moved to the end; the others where they were read");
        assert_eq!(table.start[6..9], [1, 2, 4]);
    }

    /// An error in any stage — reading a frame, or a frame a stage cannot use — ends the build with that
    /// error, whatever the other stages were doing.
    #[test]
    fn an_unreadable_frame_is_an_error_not_a_hang() {
        let good = || hoptrace_store::to_frame(std::iter::empty()).unwrap();
        let read_error = SpanTable::from_frames(
            [Ok(good()), Err(polars_err!(ComputeError: "disk on fire")), Ok(good())].into_iter(),
            &[],
        );
        assert!(read_error.err().is_some_and(|e| e.to_string().contains("disk on fire")));
        let mut no_links = good();
        no_links.drop_in_place(schema::LINK_SPAN_IDS).unwrap();
        let mut no_names = good();
        no_names.drop_in_place(schema::NAME).unwrap();
        for bad in [no_links, no_names] {
            let frames = [Ok(good()), Ok(bad), Ok(good()), Ok(good())].into_iter();
            assert!(SpanTable::from_frames(frames, &[]).is_err());
        }
    }

    #[test]
    fn a_key_probe_matches_its_key_only_inline_or_not() {
        let strings = Utf8ViewArray::from_slice_values([
            "task.template", // 13 bytes: in a buffer
            "task.templatf", // same length and prefix
            "step.handler",  // 12 bytes: inline
            "step.handlex",
            "step",
            "",
        ]);
        let found = |key: &str| -> Vec<usize> {
            let probe = KeyProbe::new(key);
            (0..strings.len()).filter(|&i| probe.matches(&strings, i)).collect()
        };
        assert_eq!(found("task.template"), [0]);
        assert_eq!(found("step.handler"), [2]);
        assert_eq!(found("step"), [4]);
        assert_eq!(found(""), [5]);
        assert_eq!(found("task.templat"), Vec::<usize>::new());
    }

    #[test]
    fn a_key_probe_forgets_the_views_of_the_array_before() {
        // Both keys sit at offset 0 of buffer 0 and share length and prefix: their views are equal.
        let first = Utf8ViewArray::from_slice_values(["task.template"]);
        let second = Utf8ViewArray::from_slice_values(["task.templatf"]);
        assert_eq!(first.views()[0].as_u128(), second.views()[0].as_u128());
        let probe = KeyProbe::new("task.template");
        assert!(probe.matches(&first, 0));
        assert!(probe.matches(&first, 0), "a repeated view matches");
        probe.forget();
        assert!(!probe.matches(&second, 0));
    }

    #[test]
    fn view_ids_give_each_string_its_interned_id_past_the_cache_limit_too() {
        let texts: Vec<String> =
            (0..ViewIds::LIMIT + 100).map(|i| format!("a rather long string {}", i % (ViewIds::LIMIT + 10))).collect();
        let all: Vec<&str> = texts.iter().chain(texts.iter().take(50)).map(String::as_str).collect();
        let strings = Utf8ViewArray::from_slice_values(&all);
        let mut interner = Interner::default();
        let mut ids = ViewIds::new(&strings);
        for i in 0..strings.len() {
            let id = ids.id(i, &mut interner);
            assert_eq!(interner.resolve(id), strings.value(i));
        }
        assert_eq!(interner.len(), ViewIds::LIMIT + 10);
    }
}
