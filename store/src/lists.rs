//! Reading a segment's lists of text or bytes — the attribute sets, the link span ids — straight from their
//! pages. Polars decodes any nesting with one general level walker, which was the largest single cost of a
//! report; for one level of lists the offsets follow from the repetition levels alone (a row starts at
//! level 0) and the items from the definition levels (maximum: an item, one below: a null item, 0: an
//! empty list), the reverse of [`crate::segment`]'s `list_pages`. Items are views into the dictionary or
//! the page they were stored in, not copies.

use std::io::Cursor;
use std::path::Path;

use polars::prelude::{polars_bail, PlSmallStr, PolarsResult, Series};
use polars_arrow::array::{Array, BinaryViewArray, ListArray, Utf8ViewArray, View};
use polars_arrow::bitmap::MutableBitmap;
use polars_arrow::datatypes::ArrowDataType;
use polars_arrow::offset::OffsetsBuffer;
use polars_buffer::Buffer;
use polars_parquet::parquet::compression::DecompressionContext;
use polars_parquet::parquet::encoding::hybrid_rle::HybridRleDecoder;
use polars_parquet::parquet::encoding::Encoding;
use polars_parquet::parquet::metadata::ColumnChunkMetadata;
use polars_parquet::parquet::page::{split_buffer, DataPage, Page};
use polars_parquet::parquet::read::{decompress, get_page_iterator, read_metadata};
use polars_parquet::parquet::schema::types::PhysicalType;

/// The list columns `names` of the segment at `path`, every row group in order. `None` when one of them is
/// not a list of text or bytes with a single repetition level, or uses an encoding other than PLAIN or
/// dictionary: the caller reads the segment with polars instead.
/// Each column is named with whether its items are text (else bytes).
pub fn read(path: &Path, names: &[(&str, bool)]) -> PolarsResult<Option<Vec<Series>>> {
    let bytes = Buffer::from(std::fs::read(path)?);
    let metadata = read_metadata(&mut Cursor::new(bytes.as_ref()))?;
    let mut columns = Vec::with_capacity(names.len());
    for &(name, is_text) in names {
        let mut list = Lists { text: is_text, offsets: vec![0], ..Default::default() };
        for row_group in metadata.row_groups.iter() {
            let mut chunks = row_group.columns_under_root_iter(name).into_iter().flatten();
            let (Some(chunk), None) = (chunks.next(), chunks.next()) else { return Ok(None) };
            if !list.read_chunk(chunk, &bytes)? {
                return Ok(None);
            }
        }
        columns.push(list.finish(name)?);
    }
    Ok(Some(columns))
}

/// One list column being decoded: offsets, item views and the buffers they point into.
#[derive(Default)]
struct Lists {
    /// Items are text (else bytes).
    text: bool,
    /// Rows started so far; `offsets` holds the ends of all but the last.
    rows: usize,
    offsets: Vec<i64>,
    views: Vec<View>,
    /// Positions of null items in `views`.
    nulls: Vec<usize>,
    buffers: Vec<Buffer<u8>>,
    /// The current column chunk's dictionary: its views (into the last of `buffers`).
    dictionary: Vec<View>,
    bytes_len: usize,
}

impl Lists {
    /// Decodes one row group's column chunk; false when it is not a shape this reader knows.
    fn read_chunk(&mut self, chunk: &ColumnChunkMetadata, file: &Buffer<u8>) -> PolarsResult<bool> {
        let descriptor = &chunk.descriptor().descriptor;
        let max_def = descriptor.max_def_level as u32;
        if descriptor.max_rep_level != 1
            || !(1..=2).contains(&max_def)
            || descriptor.primitive_type.physical_type != PhysicalType::ByteArray
        {
            return Ok(false);
        }
        self.dictionary.clear();
        let pages = get_page_iterator(chunk, Cursor::new(file.clone()), vec![], usize::MAX)?;
        let mut context = DecompressionContext::Unset;
        for page in pages {
            match decompress(page?, &mut vec![], &mut context)? {
                Page::Dict(page) => {
                    let buffer = Buffer::from(page.buffer.to_vec());
                    let index = self.buffers.len() as u32;
                    for (offset, value) in plain_values(&buffer, page.num_values, self.text)? {
                        self.dictionary.push(View::new_from_bytes(value, index, offset));
                    }
                    self.buffers.push(buffer);
                }
                Page::Data(page) => {
                    if !self.read_page(&page, max_def)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    fn read_page(&mut self, page: &DataPage, max_def: u32) -> PolarsResult<bool> {
        let split = split_buffer(page)?;
        let n = page.num_values();
        let rep = HybridRleDecoder::new(split.rep, 1, n).collect()?;
        let def = HybridRleDecoder::new(split.def, bits(max_def), n).collect()?;
        if rep.len() != n || def.len() != n {
            polars_bail!(ComputeError: "a list page holds fewer levels than it says");
        }
        let present = def.iter().filter(|&&d| d == max_def).count();
        match page.encoding() {
            Encoding::Plain => {
                let buffer = Buffer::from(split.values.to_vec());
                let index = self.buffers.len() as u32;
                let views: Vec<View> = plain_values(&buffer, present, self.text)?
                    .map(|(offset, value)| View::new_from_bytes(value, index, offset))
                    .collect();
                self.buffers.push(buffer);
                self.push_levels(&rep, &def, max_def, views.into_iter());
            }
            Encoding::RleDictionary | Encoding::PlainDictionary => {
                let Some((&width, indices)) = split.values.split_first() else {
                    polars_bail!(ComputeError: "a dictionary page without its index width");
                };
                let indices = HybridRleDecoder::new(indices, u32::from(width), present).collect()?;
                if indices.len() != present || indices.iter().any(|&i| i as usize >= self.dictionary.len()) {
                    polars_bail!(ComputeError: "a dictionary page with indices past its dictionary or too few");
                }
                let dictionary = std::mem::take(&mut self.dictionary);
                self.push_levels(&rep, &def, max_def, indices.iter().map(|&i| dictionary[i as usize]));
                self.dictionary = dictionary;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Appends a page's rows: `values` are its present items, in order.
    fn push_levels(&mut self, rep: &[u32], def: &[u32], max_def: u32, mut values: impl Iterator<Item = View>) {
        self.views.reserve(rep.len());
        for (&r, &d) in rep.iter().zip(def) {
            // Level 0 starts a row (an empty one when its definition level is 0 too), which ends the one
            // before: `offsets` gets each row's end as the next one starts, and the last one's in `finish`.
            if r == 0 {
                if self.rows > 0 {
                    self.offsets.push(self.views.len() as i64);
                }
                self.rows += 1;
            }
            if d == 0 {
                continue;
            }
            let view = if d == max_def {
                values.next().expect("as many values as present levels, counted above")
            } else {
                self.nulls.push(self.views.len());
                View::default()
            };
            self.bytes_len += view.length as usize;
            self.views.push(view);
        }
    }

    fn finish(self, name: &str) -> PolarsResult<Series> {
        let Lists { mut offsets, views, nulls, buffers, bytes_len, text, rows, .. } = self;
        if rows > 0 {
            offsets.push(views.len() as i64);
        }
        let validity = (!nulls.is_empty()).then(|| {
            let mut validity = MutableBitmap::from_len_set(views.len());
            nulls.iter().for_each(|&i| validity.set(i, false));
            validity.freeze()
        });
        let buffer_len = buffers.iter().map(|b| b.len()).sum();
        let (views, buffers) = (Buffer::from(views), Buffer::<Buffer<u8>>::from(buffers));
        // SAFETY: every view was made from a value inside the buffer it names, and text was checked to be
        // UTF-8 as it was read.
        let items: Box<dyn Array> = unsafe {
            if text {
                Utf8ViewArray::new_unchecked(ArrowDataType::Utf8View, views, buffers, validity, Some(bytes_len), buffer_len)
                    .boxed()
            } else {
                BinaryViewArray::new_unchecked(ArrowDataType::BinaryView, views, buffers, validity, Some(bytes_len), buffer_len)
                    .boxed()
            }
        };
        let dtype = ArrowDataType::LargeList(Box::new(polars_arrow::datatypes::Field::new(
            PlSmallStr::from("item"),
            items.dtype().clone(),
            true,
        )));
        let offsets = OffsetsBuffer::try_from(offsets)?;
        let list = ListArray::<i64>::try_new(dtype, offsets, items, None)?;
        Series::try_from((PlSmallStr::from(name), list.boxed()))
    }
}

/// The bit width of levels up to `max`.
fn bits(max: u32) -> u32 {
    32 - max.leading_zeros()
}

/// `n` PLAIN byte arrays of `buffer` (each a 4-byte length, then its bytes), with their offsets; with
/// `text`, each must be UTF-8.
fn plain_values(buffer: &Buffer<u8>, n: usize, text: bool) -> PolarsResult<impl Iterator<Item = (u32, &[u8])>> {
    let mut at = 0usize;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(length) = buffer.get(at..at + 4) else { polars_bail!(ComputeError: "a PLAIN value past its page") };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        at += 4;
        let Some(value) = buffer.get(at..at + length) else { polars_bail!(ComputeError: "a PLAIN value past its page") };
        if text && std::str::from_utf8(value).is_err() {
            polars_bail!(ComputeError: "a text value that is not UTF-8");
        }
        values.push((at as u32, value));
        at += length;
    }
    Ok(values.into_iter())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    use polars::prelude::*;

    use crate::schema;

    /// Rows with every shape a list takes: empty lists, null items, text that repeats (dictionary pages)
    /// and text that does not (PLAIN), links on some rows; enough of them for two pages and two row groups.
    fn rows() -> Vec<crate::SpanRow> {
        let kv = |key: &str, value: Option<String>| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: value.map(Value::StringValue) }),
            ..Default::default()
        };
        (1..=40_000u32)
            .map(|i| {
                let mut row = crate::testdata::row((i % 200) as u8, 1);
                row.span_id = u64::from(i).to_be_bytes();
                row.attributes = match i % 5 {
                    0 => vec![],
                    1 => vec![kv("step.handler", None)],
                    _ => vec![
                        kv("task.template", Some("linear_3".into())),
                        kv("task.uuid", Some(format!("a value of its own, number {i}"))),
                        kv("k", Some("short".into())),
                    ],
                };
                if i % 7 == 0 {
                    row.links = (0..i % 3).map(|n| Link { trace_id: vec![3; 16], span_id: vec![n as u8 + 1; 8], ..Default::default() }).collect();
                }
                row
            })
            .collect()
    }

    const LISTS: [(&str, bool); 5] = [
        (schema::ATTRIBUTES.keys, true),
        (schema::ATTRIBUTES.values, true),
        (schema::RESOURCE_ATTRIBUTES.keys, true),
        (schema::RESOURCE_ATTRIBUTES.values, true),
        (schema::LINK_SPAN_IDS, false),
    ];

    /// Whether [`super::read`] decoded the file's lists; when it did, they equal polars' reading. Either way
    /// a segment read gives what polars gives.
    fn reads_as_polars_does(path: &std::path::Path) -> bool {
        let polars = crate::reader::scan_path(path).unwrap().collect().unwrap();
        let names: Vec<&str> = LISTS.iter().map(|l| l.0).collect();
        let segment = crate::reader::Segment { path: path.to_owned(), range: crate::TimeRange::all() };
        assert!(segment.collect(&names).unwrap().equals_missing(&polars.select(names).unwrap()));
        let Some(decoded) = super::read(path, &LISTS).unwrap() else { return false };
        for (list, (name, _)) in decoded.iter().zip(LISTS) {
            let expected = polars.column(name).unwrap().as_materialized_series();
            assert_eq!(list.dtype(), expected.dtype(), "{name}");
            assert!(list.equals_missing(expected), "{name} reads differently");
        }
        true
    }

    #[test]
    fn lists_read_from_the_pages_equal_polars_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut frame = crate::to_frame(rows().iter()).unwrap();
        let segment = crate::segment::write(dir.path(), crate::segment::Hour(0), 1, 1, &mut frame, 36_000).unwrap();
        assert!(reads_as_polars_does(&segment.path), "the store's own list pages are decoded directly");

        // Polars' own writer makes the lists optional (a third definition level): such a segment, as older
        // collectors wrote, is read by polars.
        let path = dir.path().join("polars.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut frame).unwrap();
        assert!(!reads_as_polars_does(&path));
    }

    #[test]
    fn a_segment_read_for_a_time_range_keeps_only_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = rows();
        for (i, row) in rows.iter_mut().enumerate() {
            row.start_time_unix_nano = 1_000 + (i % 4) as u64;
        }
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let segment = crate::segment::write(dir.path(), crate::segment::Hour(0), 1, 1, &mut frame, 36_000).unwrap();
        let columns = [schema::SPAN_ID, schema::ATTRIBUTES.values, schema::LINK_SPAN_IDS];
        // Half the rows start in [1,000, 1,002) ns: the lists must be filtered as the flat columns are.
        let range = crate::TimeRange { start_unix_nano: 1_000, end_unix_nano: 1_002 };
        let fast = crate::reader::Segment { path: segment.path.clone(), range }.collect(&columns).unwrap();
        let slow = crate::collect_columns(crate::reader::Segment { path: segment.path.clone(), range }.lazy().unwrap(), &columns).unwrap();
        assert_eq!(fast.height(), rows.len() / 2);
        assert!(fast.equals_missing(&slow));
        let none = crate::TimeRange { start_unix_nano: 1_004, end_unix_nano: 2_000 };
        assert_eq!(crate::reader::Segment { path: segment.path, range: none }.collect(&columns).unwrap().height(), 0);
    }
}
