//! A segment's Parquet encoding.

use std::fs::File;

use polars::prelude::{polars_bail, CompatLevel, DataFrame, PolarsError, PolarsResult, SchemaExt};
use polars_arrow::array::{Array, BinaryViewArray, DictionaryArray, ListArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, IntegerType};
use polars_parquet::parquet::encoding::hybrid_rle::{self, Encoder};
use polars_parquet::parquet::metadata::Descriptor;
use polars_parquet::parquet::page::{DataPage, DataPageHeader, DataPageHeaderV1, DictPage, FormatEncoding, Page};
use polars_parquet::parquet::schema::types::PhysicalType;
use polars_parquet::parquet::schema::Repetition;
use polars_parquet::parquet::CowBuffer;
use polars_parquet::read::ParquetError;
use polars_parquet::write::{
    array_to_columns, get_dtype_encoding, to_parquet_schema, CompressionOptions, Compressor, DynIter,
    DynStreamingIterator, Encoding, FallibleStreamingIterator, FileWriter, ParquetType, StatisticsOptions, Version,
    WriteOptions, ZstdLevel,
};

use crate::schema;

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
pub(super) fn encode(file: &mut File, frame: &mut DataFrame, row_group_rows: usize) -> PolarsResult<()> {
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
    let mut writer =
        FileWriter::new_with_parquet_schema(file, schema, parquet_schema, options(StatisticsOptions::empty()));
    let rows = row_group_rows.max(1);
    for offset in (0..frame.height()).step_by(rows) {
        for batch in frame.slice(offset as i64, rows).iter_chunks(CompatLevel::newest(), false) {
            let num_rows = batch.len() as u64;
            let mut pages = Vec::with_capacity(columns.len());
            for (array, (required, parquet_type, options, encoding, leaves)) in
                batch.into_arrays().into_iter().zip(&columns)
            {
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
    if leaf.max_rep_level != 1
        || max_def != 1 + u32::from(item_optional)
        || leaf.primitive_type.physical_type != physical
    {
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
pub(super) fn text_dictionary(strings: &Utf8ViewArray) -> Option<DictionaryArray<u32>> {
    use rustc_hash::FxHashMap as FxMap;
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
    array
        .as_any()
        .downcast_ref::<ListArray<i64>>()
        .is_some_and(|list| list.values().is_empty() && list.null_count() == 0)
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
