//! The real `mqnamesrv` binary: `-c <file>` serves a route query from a raw-bytes client;
//! `-p` prints the config; bad values are refused naming key and line; SIGTERM stops it.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use raftmq_protocol::{decode_frame, Decoded};

const BIN: &str = env!("CARGO_BIN_EXE_mqnamesrv");

fn write_conf(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("raftmq-namesrv-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("namesrv.conf");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn serves_a_raw_route_query_and_stops_on_sigterm() {
    let conf = write_conf(
        "serve",
        "listenPort=0\nbindAddress=127.0.0.1\nsomethingUnknown=1\n",
    );
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "mqnamesrv exited before booting"
        );
        if let Some(rest) = line
            .trim()
            .strip_prefix("The Name Server boot success. serializeType=JSON, address ")
        {
            break rest.to_string();
        }
    };
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Vector V1 of the spec, byte for byte: GET_ROUTEINFO_BY_TOPIC for TopicTest.
    let v1 = include_str!("../../protocol/tests/vectors/V1.hex").trim();
    let bytes: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).unwrap())
        .collect();
    s.write_all(&bytes).unwrap();
    let mut buf = Vec::new();
    let resp = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Decoded::Frame { command, .. } = decode_frame(&buf).unwrap() {
            break command;
        }
    };
    assert_eq!(resp.opaque, 1);
    assert_eq!(resp.code, 17, "no broker registered: TOPIC_NOT_EXIST");
    assert!(resp.is_response());

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("somethingUnknown"),
        "unknown key warned: {err}"
    );
}

#[test]
fn print_config_and_bad_values() {
    let conf = write_conf("print", "listenPort=19999\n");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listenPort=19999"), "{text}");
    assert!(text.contains("scanNotActiveBrokerInterval=5000"), "{text}");

    let conf = write_conf("bad", "# x\nlistenPort=abc\n");
    let out = Command::new(BIN).arg("-c").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("listenPort") && err.contains("line 2"),
        "{err}"
    );
}
