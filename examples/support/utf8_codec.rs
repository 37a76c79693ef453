//! Messages as UTF-8 strings: a tonic codec in place of prost's generated ones, so that
//! `examples/grpc.rs` and `tests/grpc.rs` need no protoc. Both include this file with
//! `#[path = ...] mod utf8_codec;`.

use bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The codec: a message is its UTF-8 bytes.
#[derive(Clone, Copy, Default)]
pub struct Utf8;

impl Codec for Utf8 {
    type Encode = String;
    type Decode = String;
    type Encoder = Utf8;
    type Decoder = Utf8;

    fn encoder(&mut self) -> Utf8 {
        Utf8
    }

    fn decoder(&mut self) -> Utf8 {
        Utf8
    }
}

impl Encoder for Utf8 {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for Utf8 {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let text = String::from_utf8(bytes.into()).map_err(|_| Status::internal("not UTF-8"))?;
        Ok(Some(text))
    }
}
