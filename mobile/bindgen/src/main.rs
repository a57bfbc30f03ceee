//! `uniffi-bindgen`: generates the Kotlin and Swift bindings of fieldsync-mobile from its built
//! library (`generate --library target/debug/libfieldsync_mobile.so`), at the pinned version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
