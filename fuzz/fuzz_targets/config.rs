//! Plugin configurations: every input is either a configuration or an error naming a field.

#![no_main]

use kserve_auth_filter::config::Config;
use kserve_auth_filter::keys::store::KeyStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::from_json(data) {
        Ok(config) => {
            let _ = KeyStore::new(&config);
        }
        Err(error) => assert!(!error.field.is_empty(), "an error must name its field"),
    }
});
