//! The program the MPI tests drive: one MPI process per run (MPI initializes once per
//! process). `testprog <scenario>`; prints `ok <scenario>` when every check passed.
fn main() {
    cfutures_mpi::init();
    #[cfg(feature = "mpi")]
    scenarios::main();
    #[cfg(not(feature = "mpi"))]
    println!("skip: cfutures-mpi was built without its `mpi` feature");
}

#[cfg(feature = "mpi")]
mod scenarios {
    pub(crate) fn main() {}
}
