//! Links the guest at guest RAM's guest-physical address (guest.ld).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/guest.ld");
    println!("cargo:rerun-if-changed=guest.ld");
}
