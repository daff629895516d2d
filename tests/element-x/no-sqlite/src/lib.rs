//! Never compiled into anything: see Cargo.toml.
compile_error!("matrix-sdk's `sqlite` feature is not supported here: see tests/element-x/no-sqlite/Cargo.toml");
