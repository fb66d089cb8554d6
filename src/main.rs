//! The `wxshop` binary: everything lives in the library.

/// jemalloc: less fragmentation under many threads, and heap profiles (`/debug/pprof/heap`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Heap profiling is compiled in but inactive (`prof_active:false`) until `/debug/pprof/heap` asks; a sample every
/// 512 KiB (2^19) allocated on average.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";

fn main() -> std::process::ExitCode {
    wxshop::cli::main()
}
