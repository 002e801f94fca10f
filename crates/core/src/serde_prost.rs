//! Serde for protobuf messages, as their encoded bytes (`#[serde(with = "serde_prost")]`): a
//! value holding one, such as an accepted `ExportSpec`, is kept whole and read back exactly.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Serializes `message` as its protobuf encoding.
pub fn serialize<M: prost::Message, S: Serializer>(
    message: &M,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(&message.encode_to_vec())
}

/// Reads a message [`serialize`] wrote.
pub fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<M, D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    M::decode(bytes.as_slice()).map_err(D::Error::custom)
}
