//! Parquet segments: `spans/hour=YYYY-MM-DDTHH/seg-{lo:012}-{hi:012}.parquet`, partitioned by the hour of
//! the span's start. `lo..=hi` is the range of flushes whose spans the segment holds: a flush writes
//! `seg-{n}-{n}`, a compaction of `seg-a-b … seg-c-d` writes `seg-a-d`. A segment whose range lies inside
//! another's in the same partition is obsolete (its rows are in the larger one); readers skip it and it is
//! deleted after a grace period, so a reader that listed it a moment ago can still open it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::{polars_bail, CompatLevel, DataFrame, PolarsError, PolarsResult, SchemaExt};
use polars_arrow::array::{Array, BinaryViewArray, DictionaryArray, ListArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, IntegerType};
use polars_parquet::write::{
    array_to_columns, get_dtype_encoding, to_parquet_schema, CompressionOptions, Compressor, DynIter,
    DynStreamingIterator, Encoding, FallibleStreamingIterator, FileWriter, ParquetType, StatisticsOptions, Version,
    WriteOptions, ZstdLevel,
};
use polars_parquet::parquet::encoding::hybrid_rle::{self, Encoder};
use polars_parquet::parquet::metadata::Descriptor;
use polars_parquet::parquet::schema::types::PhysicalType;
use polars_parquet::parquet::schema::Repetition;
use polars_parquet::parquet::page::{DataPage, DataPageHeader, DataPageHeaderV1, DictPage, FormatEncoding, Page};
use polars_parquet::parquet::CowBuffer;
use polars_parquet::read::ParquetError;

use crate::error::{Result, StoreError};
use crate::schema;

pub const SPANS_DIR: &str = "spans";
const NANOS_PER_HOUR: u64 = 3_600 * 1_000_000_000;

/// An hour-long partition, as hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(pub u64);

impl Hour {
    pub fn of_nanos(unix_nanos: u64) -> Hour {
        Hour(unix_nanos / NANOS_PER_HOUR)
    }

    pub fn start_nanos(self) -> u64 {
        self.0 * NANOS_PER_HOUR
    }

    /// `hour=2026-11-29T21`
    pub fn dir_name(self) -> String {
        let days = (self.0 / 24) as i64;
        let (y, m, d) = civil_from_days(days);
        format!("hour={y:04}-{m:02}-{d:02}T{:02}", self.0 % 24)
    }

    pub fn parse_dir_name(name: &str) -> Option<Hour> {
        let s = name.strip_prefix("hour=")?;
        let (date, hour) = s.split_once('T')?;
        let mut parts = date.splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        let h: u64 = hour.parse().ok()?;
        let days = days_from_civil(y, m, d);
        (days >= 0 && h < 24).then(|| Hour(days as u64 * 24 + h))
    }
}

// Howard Hinnant's date algorithms: civil calendar <-> days since 1970-01-01, no time-zone database needed.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One segment file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub hour: Hour,
    pub lo: u64,
    pub hi: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

impl Segment {
    pub fn file_name(lo: u64, hi: u64) -> String {
        format!("seg-{lo:012}-{hi:012}.parquet")
    }

    fn parse_file_name(name: &str) -> Option<(u64, u64)> {
        let (lo, hi) = name.strip_prefix("seg-")?.strip_suffix(".parquet")?.split_once('-')?;
        Some((lo.parse().ok()?, hi.parse().ok()?))
    }

    fn covers(&self, other: &Segment) -> bool {
        self.hour == other.hour && self.lo <= other.lo && other.hi <= self.hi && (self.lo, self.hi) != (other.lo, other.hi)
    }
}

pub fn partition_dir(data_dir: &Path, hour: Hour) -> PathBuf {
    data_dir.join(SPANS_DIR).join(hour.dir_name())
}

/// The partitions on disk, oldest first.
pub fn partitions(data_dir: &Path) -> Result<Vec<Hour>> {
    let root = data_dir.join(SPANS_DIR);
    let mut hours = Vec::new();
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(hours),
        Err(e) => return Err(StoreError::io("list", &root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", &root))?;
        if let Some(hour) = entry.file_name().to_str().and_then(Hour::parse_dir_name) {
            hours.push(hour);
        }
    }
    hours.sort();
    Ok(hours)
}

/// Every segment file of a partition, live and obsolete, ordered by flush range.
pub fn all_segments(data_dir: &Path, hour: Hour) -> Result<Vec<Segment>> {
    let dir = partition_dir(data_dir, hour);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io("list", &dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", &dir))?;
        let name = entry.file_name();
        if let Some((lo, hi)) = name.to_str().and_then(Segment::parse_file_name) {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Segment { hour, lo, hi, path: entry.path(), bytes });
        }
    }
    out.sort_by_key(|s| (s.lo, std::cmp::Reverse(s.hi)));
    Ok(out)
}

/// Splits segments into (live, obsolete): obsolete ones are covered by a compacted segment.
pub fn split_obsolete(segments: Vec<Segment>) -> (Vec<Segment>, Vec<Segment>) {
    let (obsolete, live): (Vec<_>, Vec<_>) =
        segments.iter().cloned().partition(|s| segments.iter().any(|o| o.covers(s)));
    (live, obsolete)
}

/// The live segments of a partition.
pub fn live_segments(data_dir: &Path, hour: Hour) -> Result<Vec<Segment>> {
    Ok(split_obsolete(all_segments(data_dir, hour)?).0)
}

/// Writes `frame` as a segment: to a temporary name, fsynced, renamed, and the directory fsynced, so a
/// segment is either wholly there or not at all.
pub fn write(data_dir: &Path, hour: Hour, lo: u64, hi: u64, frame: &mut DataFrame, row_group_rows: usize) -> Result<Segment> {
    let dir = partition_dir(data_dir, hour);
    fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
    let path = dir.join(Segment::file_name(lo, hi));
    let tmp = path.with_extension("parquet.tmp");
    let mut file = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
    if let Err(source) = encode(&mut file, frame, row_group_rows) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Parquet { path: tmp, source });
    }
    file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    fs::rename(&tmp, &path).map_err(StoreError::io("rename", &tmp))?;
    sync_dir(&dir)?;
    Ok(Segment { hour, lo, hi, path, bytes })
}

/// Encodes `frame` as zstd Parquet in row groups of `row_group_rows`.
///
/// Through polars-parquet's writer rather than polars' `ParquetWriter`, for choices that one does not
/// offer (together they cut the encoding's instructions by more than 40 %, `benches/flush.rs`):
/// - fields that never hold nulls are written as required (see [`schema::parquet_field`]), so their
///   definition levels need not be computed, stored or read;
/// - statistics only for the flat columns: they let a reader skip row groups by time, id or service, while
///   min/max over every attribute key and value cost a sixth of the encoding and no reader can use them;
/// - list columns without any item in a row group are written directly ([`empty_lists_page`]);
/// - a list of flat items (the attribute sets) is written directly, its text dictionary-encoded when it
///   repeats ([`list_pages`]).
fn encode(file: &mut File, frame: &mut DataFrame, row_group_rows: usize) -> PolarsResult<()> {
    frame.rechunk_mut_par();
    let schema: ArrowSchema = frame
        .schema()
        .to_arrow(CompatLevel::newest())
        .into_iter()
        .map(|(name, field)| (name, schema::parquet_field(field)))
        .collect();
    let parquet_schema = to_parquet_schema(&schema)?;
    let options = |statistics| WriteOptions {
        statistics,
        // Level 1: the pages are mostly dictionary indices and levels already. Level 3 (the default) took 5 %
        // more encoding instructions to store 0.1 % (synthetic traces) to 7 % (the ingest benchmark's random
        // ids and values: 20.1 instead of 21.6 bytes per span) fewer bytes.
        compression: CompressionOptions::Zstd(Some(ZstdLevel::try_new(1).expect("1 is a zstd level"))),
        version: Version::V1,
        data_page_size: None,
    };
    let columns: Vec<_> = schema
        .iter_values()
        .zip(parquet_schema.fields())
        .map(|(field, parquet_type)| {
            let nested = matches!(field.dtype, ArrowDataType::LargeList(_));
            let statistics = if nested { StatisticsOptions::empty() } else { StatisticsOptions::default() };
            let required = (!field.is_nullable).then(|| field.name.clone());
            let leaves: Vec<Descriptor> = parquet_schema
                .columns()
                .iter()
                .filter(|c| c.path_in_schema[0] == field.name)
                .map(|c| c.descriptor.clone())
                .collect();
            (required, parquet_type.clone(), options(statistics), get_dtype_encoding(&field.dtype), leaves)
        })
        .collect();
    // Statistics still reach each row group's column metadata from its pages; at the file level they
    // would add a page index, which needs statistics on every column and which no reader of ours uses.
    let mut writer = FileWriter::new_with_parquet_schema(file, schema, parquet_schema, options(StatisticsOptions::empty()));
    let rows = row_group_rows.max(1);
    for offset in (0..frame.height()).step_by(rows) {
        for batch in frame.slice(offset as i64, rows).iter_chunks(CompatLevel::newest(), false) {
            let num_rows = batch.len() as u64;
            let mut pages = Vec::with_capacity(columns.len());
            for (array, (required, parquet_type, options, encoding, leaves)) in batch.into_arrays().into_iter().zip(&columns) {
                // A null in a required field would be written as a value; refuse instead.
                if let Some(name) = required.as_ref().filter(|_| array.null_count() > 0) {
                    polars_bail!(SchemaMismatch: "column {name} holds nulls but is stored as required");
                }
                let leaf_pages = if all_empty(array.as_ref()) {
                    let page = |leaf| DynIter::new(std::iter::once(empty_lists_page(leaf, array.len())));
                    leaves.iter().map(page).collect()
                } else {
                    leaf_pages(array.as_ref(), parquet_type.clone(), leaves, *options, encoding)?
                };
                for column in leaf_pages {
                    let column = column.into_iter().map(|page| page.map_err(ParquetError::from));
                    let compressed = Compressor::new(DynIter::new(column), options.compression, vec![]);
                    pages.push(Ok(DynStreamingIterator::new(compressed.map_err(PolarsError::from))));
                }
            }
            writer.write(num_rows, DynIter::new(pages.into_iter()))?;
        }
    }
    writer.end(None)?;
    Ok(())
}

/// The pages of `array`'s leaves. A list of text, bytes or small integers (the attribute sets' keys, types
/// and values, the link span ids) is written by [`list_pages`]; anything else by polars-parquet.
fn leaf_pages(
    array: &dyn Array,
    parquet_type: ParquetType,
    leaves: &[Descriptor],
    options: WriteOptions,
    encoding: &[Encoding],
) -> PolarsResult<Vec<DynIter<'static, PolarsResult<Page>>>> {
    if let (Some(list), [leaf]) = (array.as_any().downcast_ref::<ListArray<i64>>(), leaves) {
        if let Some(pages) = list_pages(list, leaf)? {
            return Ok(vec![DynIter::new(pages.into_iter().map(Ok))]);
        }
    }
    array_to_columns(array, parquet_type, options, encoding)
}

/// Rows per data page written by [`list_pages`]. Polars' reader pays per page: with 4,096-row pages a
/// report read 6 % more instructions than with these (a few megabytes of attribute text each).
const LIST_PAGE_ROWS: usize = 1 << 15;

/// The pages of a list column whose items are text, bytes or `u8` (stored as INT32), or `None` for another
/// item type. Polars-parquet computes the repetition and definition levels of any nesting with a general
/// iterator, which was a third of a segment's encoding; for one list of flat items they follow from the
/// offsets: each row's first item (or its empty list) repeats at level 0, the rest at 1; an item is
/// defined at the maximum level, one below if it is null, and an empty list at 0. Text is
/// dictionary-encoded when it repeats ([`text_dictionary`]), which polars-parquet does for flat columns only.
fn list_pages(list: &ListArray<i64>, leaf: &Descriptor) -> PolarsResult<Option<Vec<Page>>> {
    let offsets = list.offsets();
    let (first, last) = (*offsets.first() as usize, *offsets.last() as usize);
    // A sliced list keeps all of its parent's items: only those between its first and last offset count.
    let items = list.values().sliced(first, last - first);
    enum Items<'a> {
        Text(&'a Utf8ViewArray, Option<DictionaryArray<u32>>),
        Bytes(&'a BinaryViewArray),
        Small(&'a PrimitiveArray<u8>),
    }
    let items = if let Some(text) = items.as_any().downcast_ref::<Utf8ViewArray>() {
        Items::Text(text, text_dictionary(text))
    } else if let Some(bytes) = items.as_any().downcast_ref::<BinaryViewArray>() {
        Items::Bytes(bytes)
    } else if let Some(small) = items.as_any().downcast_ref::<PrimitiveArray<u8>>() {
        Items::Small(small)
    } else {
        return Ok(None);
    };
    let (valid, nulls): (&dyn Fn(usize) -> bool, usize) = match &items {
        Items::Text(text, _) => (&|i| text.is_valid(i), text.null_count()),
        Items::Bytes(bytes) => (&|i| bytes.is_valid(i), bytes.null_count()),
        Items::Small(small) => (&|i| small.is_valid(i), small.null_count()),
    };
    // One level of repetition, and a required list: definition 0 is an empty list, the maximum a present
    // item, and one below it a null item (only where items are optional).
    let item_optional = leaf.primitive_type.field_info.repetition == Repetition::Optional;
    let max_def = leaf.max_def_level as u32;
    let physical = match &items {
        Items::Text(..) | Items::Bytes(_) => PhysicalType::ByteArray,
        Items::Small(_) => PhysicalType::Int32,
    };
    if leaf.max_rep_level != 1 || max_def != 1 + u32::from(item_optional) || leaf.primitive_type.physical_type != physical {
        return Ok(None);
    }
    if nulls > 0 && !item_optional {
        polars_bail!(SchemaMismatch: "column {} holds null items but stores them as required", leaf.primitive_type.field_info.name);
    }
    let mut pages = Vec::new();
    let mut index_bits = 0;
    if let Items::Text(_, Some(dictionary)) = &items {
        let distinct = dictionary.values().as_any().downcast_ref::<Utf8ViewArray>().expect("text dictionary");
        let mut buffer = Vec::new();
        for value in distinct.values_iter() {
            plain_bytes(&mut buffer, value.as_bytes());
        }
        pages.push(Page::Dict(DictPage::new(CowBuffer::Owned(buffer), distinct.len(), false)));
        index_bits = 32 - (distinct.len().saturating_sub(1) as u32).leading_zeros();
    }
    let (mut rep, mut def) = (Vec::new(), Vec::new());
    for from in (0..list.len()).step_by(LIST_PAGE_ROWS) {
        let rows = from..(from + LIST_PAGE_ROWS).min(list.len());
        rep.clear();
        def.clear();
        for row in rows.clone() {
            let (start, end) = offsets.start_end(row);
            if start == end {
                rep.push(0);
                def.push(0);
            }
            for i in start - first..end - first {
                rep.push(u32::from(i != start - first));
                def.push(if valid(i) { max_def } else { max_def - 1 });
            }
        }
        let mut buffer = Vec::new();
        levels(&mut buffer, 1, |b, bits| hybrid_rle::encode(b, rep.iter().copied(), bits))?;
        levels(&mut buffer, max_def, |b, bits| hybrid_rle::encode(b, def.iter().copied(), bits))?;
        let present = offsets.start_end(rows.start).0 - first..offsets.start_end(rows.end - 1).1 - first;
        let present = present.filter(|&i| valid(i));
        let encoding = match &items {
            Items::Text(_, Some(dictionary)) => {
                buffer.push(index_bits as u8);
                hybrid_rle::encode(&mut buffer, present.map(|i| dictionary.keys().value(i)), index_bits)?;
                FormatEncoding::RLE_DICTIONARY
            }
            Items::Text(text, None) => {
                // SAFETY: `present` holds indices of `text`.
                present.for_each(|i| plain_bytes(&mut buffer, unsafe { text.value_unchecked(i) }.as_bytes()));
                FormatEncoding::PLAIN
            }
            Items::Bytes(bytes) => {
                // SAFETY: `present` holds indices of `bytes`.
                present.for_each(|i| plain_bytes(&mut buffer, unsafe { bytes.value_unchecked(i) }));
                FormatEncoding::PLAIN
            }
            Items::Small(small) => {
                present.for_each(|i| buffer.extend_from_slice(&i32::from(small.value(i)).to_le_bytes()));
                FormatEncoding::PLAIN
            }
        };
        pages.push(data_page(buffer, rep.len(), encoding, leaf, rows.len()));
    }
    Ok(Some(pages))
}

/// A byte array as PLAIN encodes it: its length, then its bytes.
fn plain_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

/// Levels as data page v1 stores them: their byte length, then the RLE/bit-packed hybrid encoding that
/// `encode` writes in the bit width `max_level` needs. Nothing for a maximum level of 0.
fn levels(
    buffer: &mut Vec<u8>,
    max_level: u32,
    encode: impl FnOnce(&mut Vec<u8>, u32) -> std::io::Result<()>,
) -> PolarsResult<()> {
    if max_level == 0 {
        return Ok(());
    }
    let at = buffer.len();
    buffer.extend_from_slice(&[0; 4]);
    encode(buffer, 32 - max_level.leading_zeros())?;
    let length = (buffer.len() - at - 4) as u32;
    buffer[at..at + 4].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

/// The most distinct values a dictionary of list text holds. 65,536, not the 4,096 it was: a row group's
/// attribute values repeat (templates, handlers, run ids) among thousands of distinct ids, and dictionary
/// pages let readers take each value as a view into one small dictionary instead of copying it out of
/// plain pages (a 10M-span report 3 % faster, its store 3 % smaller; ingest of random values unchanged).
const DICTIONARY_LIMIT: usize = 1 << 16;

/// `strings` as a dictionary of its distinct values, if at most [`DICTIONARY_LIMIT`] distinct values make
/// up at most a quarter of it. The limit also bounds the hashing work a client could force with
/// colliding values.
fn text_dictionary(strings: &Utf8ViewArray) -> Option<DictionaryArray<u32>> {
    use crate::fxhash::FxMap;
    let limit = DICTIONARY_LIMIT.min(strings.len() / 4);
    let mut ids: FxMap<&str, u32> = FxMap::default();
    let mut distinct: Vec<&str> = Vec::new();
    // The last value seen per (length, first bytes) of the view: repeated strings are found by one
    // comparison before any hashing (attribute keys come in the same order span after span).
    let mut recent = [(u64::MAX, 0u32); 256];
    let mut keys = Vec::with_capacity(strings.len());
    for (i, view) in strings.views().iter().enumerate() {
        if !strings.is_valid(i) {
            keys.push(0);
            continue;
        }
        // SAFETY: `i` is an index of `strings`.
        let value = unsafe { strings.value_unchecked(i) };
        let head = view.as_u128() as u64;
        let slot = &mut recent[(head.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize];
        if slot.0 == head && distinct[slot.1 as usize] == value {
            keys.push(slot.1);
            continue;
        }
        let next = distinct.len() as u32;
        let id = *ids.entry(value).or_insert(next);
        if id == next {
            if distinct.len() >= limit {
                return None;
            }
            distinct.push(value);
        }
        *slot = (head, id);
        keys.push(id);
    }
    let keys = PrimitiveArray::new(ArrowDataType::UInt32, keys.into(), strings.validity().cloned());
    let dtype = ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(ArrowDataType::Utf8View), false);
    let distinct = Utf8ViewArray::from_slice_values(&distinct);
    DictionaryArray::try_new(dtype, keys, distinct.boxed()).ok()
}

/// A required list column none of whose rows has an item (`events` and `links`, mostly).
fn all_empty(array: &dyn Array) -> bool {
    array.as_any().downcast_ref::<ListArray<i64>>().is_some_and(|list| list.values().is_empty() && list.null_count() == 0)
}

/// The one page of a leaf under a list that is empty in all `rows`: every repetition and definition level
/// is 0, each written as one RLE run, and there are no values. Polars' writer finds this out by walking
/// every row of every leaf three times; for the empty `events` and `links` that was a fifth of a segment's
/// encoding (`benches/flush.rs`).
fn empty_lists_page(leaf: &Descriptor, rows: usize) -> PolarsResult<Page> {
    let mut buffer = Vec::new();
    for max_level in [leaf.max_rep_level, leaf.max_def_level] {
        levels(&mut buffer, max_level as u32, |b, bits| u32::run_length_encode(b, rows, 0, bits))?;
    }
    Ok(data_page(buffer, rows, FormatEncoding::PLAIN, leaf, rows))
}

/// A data page (v1, levels RLE-encoded, no statistics) of `leaf` holding `num_values` levels over `rows` rows.
fn data_page(buffer: Vec<u8>, num_values: usize, encoding: FormatEncoding, leaf: &Descriptor, rows: usize) -> Page {
    let header = DataPageHeaderV1 {
        num_values: num_values as i32,
        encoding,
        definition_level_encoding: FormatEncoding::RLE,
        repetition_level_encoding: FormatEncoding::RLE,
        statistics: None,
    };
    Page::Data(DataPage::new(DataPageHeader::V1(header), CowBuffer::Owned(buffer), leaf.clone(), rows))
}

/// fsync on a directory makes a rename or a new file in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("fsync", dir))
}

/// The last completed flush and the last WAL record it covers; written atomically after a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub flush: u64,
    pub wal_seq: u64,
}

const CHECKPOINT: &str = "CHECKPOINT";

impl Checkpoint {
    pub fn load(data_dir: &Path) -> Result<Checkpoint> {
        let path = data_dir.join(CHECKPOINT);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        let bad = |reason: &str| StoreError::Checkpoint { path: path.clone(), reason: reason.to_owned() };
        let mut flush = None;
        let mut wal_seq = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("flush", v)) => flush = Some(v.trim().parse().map_err(|_| bad("flush is not a number"))?),
                Some(("wal_seq", v)) => wal_seq = Some(v.trim().parse().map_err(|_| bad("wal_seq is not a number"))?),
                _ => {}
            }
        }
        Ok(Checkpoint { flush: flush.ok_or_else(|| bad("no flush="))?, wal_seq: wal_seq.ok_or_else(|| bad("no wal_seq="))? })
    }

    pub fn store(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(CHECKPOINT);
        let tmp = data_dir.join("CHECKPOINT.tmp");
        fs::write(&tmp, format!("flush={}\nwal_seq={}\n", self.flush, self.wal_seq))
            .and_then(|_| File::open(&tmp)?.sync_all())
            .map_err(StoreError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(StoreError::io("rename", &tmp))?;
        sync_dir(data_dir)
    }
}

/// Start-up clean-up: segments of a flush that never reached its checkpoint (their spans are still in the
/// WAL and will be replayed), obsolete segments, and temporary files.
pub fn recover(data_dir: &Path, checkpoint: Checkpoint) -> Result<()> {
    for hour in partitions(data_dir)? {
        let dir = partition_dir(data_dir, hour);
        for entry in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let path = entry.map_err(StoreError::io("list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
            }
        }
        let (live, obsolete) = split_obsolete(all_segments(data_dir, hour)?);
        for s in obsolete.iter().chain(live.iter().filter(|s| s.hi > checkpoint.flush)) {
            tracing::info!(path = %s.path.display(), "removing segment left by an interrupted flush or compaction");
            fs::remove_file(&s.path).map_err(StoreError::io("remove", &s.path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names_round_trip() {
        // 2026-11-29T21:08:58Z
        let nanos = 1_795_986_538u64 * 1_000_000_000;
        let hour = Hour::of_nanos(nanos);
        assert_eq!(hour.dir_name(), "hour=2026-11-29T21");
        assert_eq!(Hour::parse_dir_name("hour=2026-11-29T21"), Some(hour));
        assert_eq!(Hour(0).dir_name(), "hour=1970-01-01T00");
        for h in (0..200_000u64).step_by(997) {
            assert_eq!(Hour::parse_dir_name(&Hour(h).dir_name()), Some(Hour(h)));
        }
        assert_eq!(Hour::parse_dir_name("hour=2026-11-29T24"), None);
        assert_eq!(Hour::parse_dir_name("hour=junk"), None);
    }

    #[test]
    fn compacted_segment_makes_its_inputs_obsolete() {
        let seg = |lo, hi| Segment { hour: Hour(1), lo, hi, path: PathBuf::new(), bytes: 0 };
        let (live, obsolete) = split_obsolete(vec![seg(1, 1), seg(1, 3), seg(2, 2), seg(3, 3), seg(4, 4)]);
        assert_eq!(live.iter().map(|s| (s.lo, s.hi)).collect::<Vec<_>>(), vec![(1, 3), (4, 4)]);
        assert_eq!(obsolete.len(), 3);
    }

    #[test]
    fn segments_store_never_null_fields_as_required_and_statistics_of_flat_columns() {
        use polars_parquet::parquet::read::read_metadata;
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (1..=4u8).map(|i| crate::testdata::row(i, i)).collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let segment = write(dir.path(), Hour(0), 1, 1, &mut frame, 2).unwrap();
        let meta = read_metadata(&mut File::open(&segment.path).unwrap()).unwrap();
        assert_eq!(meta.row_groups.len(), 2, "row groups of the requested size");
        let columns = meta.row_groups[0].parquet_columns();
        let column = |path: &str| {
            columns
                .iter()
                .find(|c| c.descriptor().path_in_schema.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(".") == path)
                .unwrap_or_else(|| panic!("no column {path}"))
        };
        // The maximum definition level counts the optional and repeated fields on a column's path.
        let def_level = |path: &str| column(path).descriptor().descriptor.max_def_level;
        assert_eq!(def_level("span_id"), 0);
        assert_eq!(def_level("start_time_unix_nano"), 0);
        assert_eq!(def_level("parent_span_id"), 1);
        assert_eq!(def_level("attribute_keys.list.element"), 1, "a required list of required keys");
        assert_eq!(def_level("attribute_values.list.element"), 2, "a value may be empty (null)");
        assert_eq!(def_level("links.list.element.span_id"), 1);
        assert_eq!(def_level("links.list.element.trace_state"), 2);
        let has_statistics = |path: &str| column(path).statistics(&meta.footer_buf).is_some();
        for flat in ["trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano", "service_name", "name"] {
            assert!(has_statistics(flat), "{flat} has statistics for pruning");
        }
        for nested in ["attribute_keys.list.element", "attribute_values.list.element", "links.list.element.trace_id"] {
            assert!(!has_statistics(nested), "{nested} has no statistics");
        }
        // And every field reads back as written.
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
    }

    #[test]
    fn row_groups_without_any_link_or_event_read_back_beside_ones_with_them() {
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        let dir = tempfile::tempdir().unwrap();
        let mut rows: Vec<_> = (1..=6u8).map(|i| crate::testdata::row(i, i)).collect();
        // Row groups of two rows: the first and the last have neither links nor events.
        rows[2].links = vec![Link { trace_id: vec![7; 16], span_id: vec![8; 8], flags: 1, ..Default::default() }];
        rows[3].events = vec![Event { time_unix_nano: 1_500, name: "retry".into(), ..Default::default() }];
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        write(dir.path(), Hour(0), 1, 1, &mut frame, 2).unwrap();
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
        let records = crate::records(&read).unwrap();
        assert_eq!(records.iter().map(|r| (r.links.len(), r.events.len())).collect::<Vec<_>>(), [(0, 0), (0, 0), (1, 0), (0, 1), (0, 0), (0, 0)]);
        assert_eq!(records[2].links[0].span_id, "0808080808080808");
        assert_eq!(records[3].events[0].name, "retry");
    }

    #[test]
    fn attribute_text_that_repeats_is_dictionary_encoded_and_reads_back_with_its_empty_values() {
        use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
        use polars_parquet::parquet::read::read_metadata;
        let kv = |key: &str, value: Option<Value>| KeyValue { key: key.into(), value: Some(AnyValue { value }), ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        // Row groups of 36,000 rows: the first over two pages of list items, the second a slice of the frame.
        let rows: Vec<_> = (1..=40_000u32)
            .map(|i| {
                let mut row = crate::testdata::row((i % 200) as u8, (i % 250) as u8);
                row.span_id = (i as u64).to_be_bytes();
                row.attributes = vec![
                    kv("task.template", Some(Value::StringValue("linear_3".into()))),
                    kv("messaging.message.id", Some(Value::StringValue(format!("message number {}", i % 4)))),
                    // Every third value is empty: a null among the dictionary's keys.
                    kv("step.handler", (i % 3 != 0).then(|| Value::StringValue("simple_calculation".into()))),
                ];
                row
            })
            .collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let segment = write(dir.path(), Hour(0), 1, 1, &mut frame, 36_000).unwrap();
        let meta = read_metadata(&mut File::open(&segment.path).unwrap()).unwrap();
        assert_eq!(meta.row_groups.len(), 2);
        let has_dictionary = |path: &str| {
            let columns = meta.row_groups[0].parquet_columns();
            let column = columns.iter().find(|c| c.descriptor().path_in_schema.join(".") == path).unwrap();
            column.dictionary_page_offset().is_some()
        };
        assert!(has_dictionary("attribute_keys.list.element"));
        assert!(has_dictionary("attribute_values.list.element"), "six distinct values in 108,000");
        assert!(!has_dictionary("attribute_types.list.element"), "not text");
        assert!(text_dictionary(&Utf8ViewArray::from_slice_values(["a", "b", "a", "a", "a", "a", "a", "a"])).is_some());
        assert!(text_dictionary(&Utf8ViewArray::from_slice_values(["a", "b", "c", "a", "a", "a", "a", "a"])).is_none(), "3 of 8 distinct");
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
        let records = crate::records(&read).unwrap();
        assert_eq!(records[2].attribute("step.handler"), Some(""), "an empty value reads as empty text");
        assert_eq!(records[3].attribute("step.handler"), Some("simple_calculation"));
        assert_eq!(records[4].attribute("messaging.message.id"), Some("message number 1"));
        assert_eq!(records[35_998].attribute("messaging.message.id"), Some("message number 3"), "the second page");
        assert_eq!(records[39_999].attribute("step.handler"), Some("simple_calculation"), "the second row group");
    }

    #[test]
    fn a_null_in_a_required_column_is_refused_not_written() {
        use polars::prelude::{IntoColumn, NamedFrom, Series};
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (1..=2u8).map(|i| crate::testdata::row(i, i)).collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let names = Series::new(schema::NAME.into(), [Some("a"), None]).into_column();
        frame.replace(schema::NAME, names).unwrap();
        let err = write(dir.path(), Hour(0), 1, 1, &mut frame, 8).unwrap_err().to_string();
        assert!(err.contains("column name holds nulls"), "{err}");
        let dir_entries = fs::read_dir(partition_dir(dir.path(), Hour(0))).unwrap().count();
        assert_eq!(dir_entries, 0, "neither a segment nor its temporary file left behind");
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Checkpoint::default());
        let cp = Checkpoint { flush: 7, wal_seq: 42 };
        cp.store(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), cp);
        fs::write(dir.path().join(CHECKPOINT), "flush=x\n").unwrap();
        assert!(Checkpoint::load(dir.path()).unwrap_err().to_string().contains("flush is not a number"));
    }
}
