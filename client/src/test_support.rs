//! Scripted servers for unit tests: each answers every request with what its handler
//! returns (no server code of the project).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Handler = Arc<dyn Fn(&RemotingCommand) -> RemotingCommand + Send + Sync>;

/// A server answering each request with `handler(request)`; its address.
pub(crate) async fn fake(
    handler: impl Fn(&RemotingCommand) -> RemotingCommand + Send + Sync + 'static,
) -> String {
    let handler: Handler = Arc::new(handler);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Decoded::Frame { command, consumed }) = decode_frame(&buf) {
                        buf.advance(consumed);
                        let resp = handler(&command);
                        s.write_all(&encode_frame(&resp).unwrap()).await.unwrap();
                    }
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}
