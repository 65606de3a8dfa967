//! RFB paths QEMU does not exercise (it only speaks 3.8 and sends nothing unsolicited): a small
//! RFB server written here speaks 3.3 / 3.7, refuses connections, and floods the client with
//! server messages to prove the client drains them (a client that did not would block the server).

use std::time::Duration;

use packer_sdk::bootcommand::vnc::{RfbVersion, VncClient};
use packer_sdk::bootcommand::{parse, type_boot_command, DriverError};
use packer_sdk::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// Server side of the handshake up to ServerInit, with security None.
async fn serve_handshake(s: &mut TcpStream, version: &[u8; 12]) {
    s.write_all(version).await.unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, version, "client must answer with the version we offered");
    if version == b"RFB 003.003\n" {
        s.write_u32(1).await.unwrap();
    } else {
        s.write_all(&[2, 16, 1]).await.unwrap(); // offers Tight (16) and None (1)
        assert_eq!(s.read_u8().await.unwrap(), 1, "client must choose None");
        if version == b"RFB 003.008\n" {
            s.write_u32(0).await.unwrap();
        }
    }
    assert_eq!(s.read_u8().await.unwrap(), 1, "ClientInit must ask for a shared session");
    s.write_u16(800).await.unwrap();
    s.write_u16(600).await.unwrap();
    s.write_all(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).await.unwrap();
    s.write_u32(4).await.unwrap();
    s.write_all(b"fake").await.unwrap();
}

async fn typed_keys_survive_a_flood(version: &'static [u8; 12], expect: RfbVersion) {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        serve_handshake(&mut s, version).await;
        // 8 MiB of Bell messages: far more than socket buffers hold, so this only finishes if the
        // client keeps reading.
        let flood = vec![2u8; 8 << 20];
        s.write_all(&flood).await.unwrap();
        let mut msgs = Vec::new();
        for _ in 0..4 {
            let mut m = [0u8; 8];
            s.read_exact(&mut m).await.unwrap();
            msgs.push(m);
        }
        msgs
    });
    let mut vnc = VncClient::connect_tcp(&addr, None).await.expect("handshake");
    assert_eq!(vnc.version(), expect);
    assert_eq!(vnc.server_init().name, "fake");
    assert_eq!((vnc.server_init().width, vnc.server_init().height), (800, 600));
    type_boot_command(&mut vnc, &parse("a<enter>").unwrap(), Duration::ZERO, CancellationToken::new())
        .await
        .expect("typing");
    let msgs = tokio::time::timeout(LIMIT, server).await.expect("server blocked: client did not drain").unwrap();
    assert_eq!(
        msgs,
        vec![
            [4, 1, 0, 0, 0, 0, 0, 0x61],
            [4, 0, 0, 0, 0, 0, 0, 0x61],
            [4, 1, 0, 0, 0, 0, 0xFF, 0x0D],
            [4, 0, 0, 0, 0, 0, 0xFF, 0x0D],
        ]
    );
}

#[tokio::test]
async fn rfb_3_3_with_flood() {
    typed_keys_survive_a_flood(b"RFB 003.003\n", RfbVersion::V3_3).await;
}

#[tokio::test]
async fn rfb_3_7_with_flood() {
    typed_keys_survive_a_flood(b"RFB 003.007\n", RfbVersion::V3_7).await;
}

#[tokio::test]
async fn rfb_3_8_with_flood() {
    typed_keys_survive_a_flood(b"RFB 003.008\n", RfbVersion::V3_8).await;
}

#[tokio::test]
async fn refusals_carry_the_server_reason() {
    // 3.3: security type 0 + reason.
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"RFB 003.003\n").await.unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).await.unwrap();
        s.write_u32(0).await.unwrap();
        s.write_u32(13).await.unwrap();
        s.write_all(b"too many conn").await.unwrap();
    });
    let err = VncClient::connect_tcp(&addr, None).await.unwrap_err();
    assert!(matches!(err, DriverError::Protocol(_)));
    assert!(err.to_string().contains("too many conn"), "{err}");

    // 3.8: only VeNCrypt (19) offered.
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).await.unwrap();
        s.write_all(&[1, 19]).await.unwrap();
        let _ = s.read_u8().await;
    });
    let err = VncClient::connect_tcp(&addr, None).await.unwrap_err().to_string();
    assert!(err.contains("[19]") && err.contains("disable TLS"), "{err}");

    // 3.8: SecurityResult failure with a reason.
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).await.unwrap();
        s.write_all(&[1, 1]).await.unwrap();
        let _ = s.read_u8().await;
        s.write_u32(1).await.unwrap();
        s.write_u32(7).await.unwrap();
        s.write_all(b"go away").await.unwrap();
    });
    let err = VncClient::connect_tcp(&addr, None).await.unwrap_err().to_string();
    assert!(err.contains("go away"), "{err}");
}

#[tokio::test]
async fn hostile_string_lengths_are_rejected() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"RFB 003.003\n").await.unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).await.unwrap();
        s.write_u32(0).await.unwrap();
        s.write_u32(u32::MAX).await.unwrap();
    });
    let err = VncClient::connect_tcp(&addr, None).await.unwrap_err().to_string();
    assert!(err.contains("really a VNC server"), "{err}");
}
