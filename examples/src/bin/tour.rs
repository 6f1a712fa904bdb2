//! The cfutures tour: every scenario from the `concurrent.futures` tutorials, run and timed.
fn main() {
    println!("cfutures tour: coming soon");
}
