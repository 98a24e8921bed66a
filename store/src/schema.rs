//! The span schema: column names shared by every writer and reader of segments. `docs/storage.md` is the
//! user-facing description of the same schema; keep the two in step.

use polars_arrow::datatypes::{ArrowDataType, Field};

pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const PARENT_SPAN_ID: &str = "parent_span_id";
pub const TRACE_STATE: &str = "trace_state";
pub const FLAGS: &str = "flags";
pub const NAME: &str = "name";
pub const KIND: &str = "kind";
pub const SERVICE_NAME: &str = "service_name";
pub const START_TIME: &str = "start_time_unix_nano";
pub const END_TIME: &str = "end_time_unix_nano";
pub const STATUS_CODE: &str = "status_code";
pub const STATUS_MESSAGE: &str = "status_message";
pub const EVENTS: &str = "events";
pub const LINKS: &str = "links";
/// The `span_id` of each of `links`, as a flat list: a reader that follows links needs only these, and
/// Parquet readers decode every leaf of a list of structs to return one of its fields.
pub const LINK_SPAN_IDS: &str = "link_span_ids";
pub const SCOPE_NAME: &str = "scope_name";
/// What the sender's SDK dropped from the span at its limits (OTLP's `dropped_*_count`). Null in segments
/// written before they were kept: unknown, not zero.
pub const DROPPED_ATTRIBUTES: &str = "dropped_attributes_count";
pub const DROPPED_EVENTS: &str = "dropped_events_count";
pub const DROPPED_LINKS: &str = "dropped_links_count";
pub const SCOPE_VERSION: &str = "scope_version";

pub const EVENT_TIME: &str = "time_unix_nano";
pub const EVENT_NAME: &str = "name";

/// An attribute set is three parallel lists: the keys, each value's type, each value as text.
///
/// Parallel lists rather than a list of structs: Parquet's nested encoding costs per leaf and per row, and
/// in polars a `list<struct<key, type, value>>` cost twice as much to write as the three lists; DuckDB
/// reads one value as `attribute_values[list_position(attribute_keys, 'task.template')]`.
#[derive(Debug, Clone, Copy)]
pub struct AttributeColumns {
    pub keys: &'static str,
    pub types: &'static str,
    pub values: &'static str,
}

/// The span's attributes; also the field names inside `events` and `links`.
pub const ATTRIBUTES: AttributeColumns =
    AttributeColumns { keys: "attribute_keys", types: "attribute_types", values: "attribute_values" };
pub const RESOURCE_ATTRIBUTES: AttributeColumns = AttributeColumns {
    keys: "resource_attribute_keys",
    types: "resource_attribute_types",
    values: "resource_attribute_values",
};
/// The instrumentation scope's attributes. Segments written before these columns read them as empty.
pub const SCOPE_ATTRIBUTES: AttributeColumns =
    AttributeColumns { keys: "scope_attribute_keys", types: "scope_attribute_types", values: "scope_attribute_values" };

/// The type of a stored attribute value, which is kept as text in `value`: strings as they are, booleans
/// as `true`/`false`, integers in decimal, doubles in Rust's shortest round-trip form (`0.5`, `NaN`, `inf`),
/// bytes in base64, arrays and key-value lists as OTLP/JSON; an empty value is null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AttrType {
    Empty = 0,
    String = 1,
    Bool = 2,
    Int = 3,
    Double = 4,
    Bytes = 5,
    Array = 6,
    KvList = 7,
}

impl AttrType {
    /// The type stored in an `*_types` list; an unknown code (a newer writer) reads as a string.
    pub fn from_code(code: u8) -> AttrType {
        match code {
            0 => AttrType::Empty,
            2 => AttrType::Bool,
            3 => AttrType::Int,
            4 => AttrType::Double,
            5 => AttrType::Bytes,
            6 => AttrType::Array,
            7 => AttrType::KvList,
            _ => AttrType::String,
        }
    }
}

/// `field` as a segment stores it: required unless it may hold nulls. Polars makes every field nullable;
/// a required one costs no definition levels to write or read. Nulls occur only in the optional span
/// fields (an absent parent, trace state, status message, scope) and in attribute values of the empty type;
/// lists are empty, never null, and list items are required.
pub fn parquet_field(field: Field) -> Field {
    const NULLABLE: [&str; 8] = [
        PARENT_SPAN_ID,
        TRACE_STATE,
        STATUS_MESSAGE,
        SCOPE_NAME,
        SCOPE_VERSION,
        // Written as numbers, but null in frames of older segments that compaction merges.
        DROPPED_ATTRIBUTES,
        DROPPED_EVENTS,
        DROPPED_LINKS,
    ];
    let name = field.name;
    let nullable = NULLABLE.contains(&name.as_str());
    let dtype = match field.dtype {
        ArrowDataType::LargeList(item) => {
            let values_may_be_empty =
                [ATTRIBUTES.values, RESOURCE_ATTRIBUTES.values, SCOPE_ATTRIBUTES.values].contains(&name.as_str());
            let dtype = match item.dtype {
                ArrowDataType::Struct(fields) => ArrowDataType::Struct(fields.into_iter().map(parquet_field).collect()),
                other => other,
            };
            ArrowDataType::LargeList(Box::new(Field::new(item.name, dtype, values_may_be_empty)))
        }
        other => other,
    };
    Field::new(name, dtype, nullable)
}
