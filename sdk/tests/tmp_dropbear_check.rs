use packer_sdk::communicator::ssh::*;
use packer_sdk::communicator::{Communicator, FileInfo, RemoteCommand};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropbear() {
    let dir = std::env::temp_dir().join(format!("dbcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ed = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
    let rsa = TemporaryKeyPair::generate(KeyType::Rsa { bits: 2048 }).unwrap();
    std::fs::write(dir.join("authorized_keys"), format!("{}\n{}\n", ed.public_key_line, rsa.public_key_line)).unwrap();
    assert!(Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(dir.join("hk"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = format!("set -e; mount -t tmpfs -o mode=0700 tmpfs /root; mkdir -m 0700 /root/.ssh; cp {d}/authorized_keys /root/.ssh/; chmod 600 /root/.ssh/authorized_keys; exec dropbear -F -E -s -p 127.0.0.1:{port} -r {d}/hk", d = dir.display());
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c", &script])
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = async {
        for (name, pair) in [("ed25519", &ed), ("rsa", &rsa)] {
            for ft in [FileTransfer::Scp, FileTransfer::Sftp] {
                let mut c =
                    SshConfig::new("127.0.0.1", port, "root", SshAuth::PrivateKey(pair.private_key_pem.clone()));
                c.file_transfer = ft;
                let comm = SshCommunicator::connect(&c).await.map_err(|e| format!("{name}: {e}"))?;
                let h = comm.start(RemoteCommand::new("exit 5")).await.map_err(|e| e.to_string())?;
                assert_eq!(h.wait().await.unwrap(), 5);
                let p = dir.join(format!("up-{name}-{ft:?}"));
                let data = vec![7u8; 3_000_000];
                comm.upload(
                    p.to_str().unwrap(),
                    Box::new(std::io::Cursor::new(data.clone())),
                    Some(FileInfo { name: "x".into(), size: data.len() as i64, mode: 0o640 }),
                )
                .await
                .map_err(|e| format!("{name} {ft:?} upload: {e}"))?;
                assert_eq!(std::fs::read(&p).unwrap(), data);
                for i in 0..5 {
                    eprintln!("after upload {i}: closed={}", comm.is_closed());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let h = comm.start(RemoteCommand::new("true")).await.map_err(|e| format!("start after upload: {e}"))?;
                h.wait().await.map_err(|e| e.to_string())?;
                let out = dir.join(format!("down-{name}-{ft:?}"));
                comm.download(p.to_str().unwrap(), Box::new(tokio::fs::File::create(&out).await.unwrap()))
                    .await
                    .map_err(|e| format!("{name} {ft:?} download: {e}"))?;
                assert_eq!(std::fs::read(&out).unwrap(), data);
                let d = dir.join(format!("dirs-{name}-{ft:?}"));
                comm.upload_dir(
                    d.to_str().unwrap(),
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/communicator").as_path(),
                    &[],
                )
                .await
                .map_err(|e| format!("{name} {ft:?} upload_dir: {e}"))?;
                assert!(d.join("communicator/ssh/scp.rs").exists());
                let mut pc = c.clone();
                pc.pty = true;
                let comm = SshCommunicator::connect(&pc).await.map_err(|e| format!("{name}: {e}"))?;
                let h = comm.start(RemoteCommand::new("tty -s")).await.map_err(|e| e.to_string())?;
                assert_eq!(h.wait().await.unwrap(), 0);
                eprintln!("{name} {ft:?}: OK");
            }
        }
        Ok::<(), String>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    if let Err(e) = result {
        panic!("{e}\n{log}");
    }
}
