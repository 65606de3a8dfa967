//! The `CommandFinished` gob stream of `Communicator.Start`: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::rpc::gob::{decode_command_finished, encode_command_finished};

fuzz_target!(|data: &[u8]| {
    let _ = decode_command_finished(data);
    if data.len() >= 8 {
        let exit = i64::from_le_bytes(data[..8].try_into().unwrap());
        assert_eq!(decode_command_finished(&encode_command_finished(exit)), Ok(exit));
    }
});
