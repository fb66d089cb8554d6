//! The `wxshop` binary: everything lives in the library.

/// jemalloc: less fragmentation under many threads, and heap profiles (`/debug/pprof/heap`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Heap profiling is compiled in but inactive (`prof_active:false`) until `/debug/pprof/heap` asks; a sample every
/// 512 KiB (2^19) allocated on average. Freed pages go back to the system within about a second, by jemalloc's
/// background thread (its default keeps them 10 s, and only returns them when the process allocates again): idle
/// RSS 30 → 25 MiB in bench/RESULTS.md. `MALLOC_CONF` in the environment still overrides any of it.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] =
    b"prof:true,prof_active:false,lg_prof_sample:19,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    wxshop::cli::main()
}
