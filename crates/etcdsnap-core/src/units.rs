//! Byte counts for people: binary units for our own pages and checks, SI units where we print
//! what etcdutl prints.

/// Binary units with one decimal: `512 B`, `20.0 KiB`, `1.5 MiB`.
pub fn iec_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// SI units as `etcdutl snapshot status` prints them: `999 B`, `2.1 MB`, `1.3 GB`, `25 MB`.
pub fn si_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_etcdutl_and_binary() {
        assert_eq!(iec_bytes(512), "512 B");
        assert_eq!(iec_bytes(20 * 1024), "20.0 KiB");
        assert_eq!(iec_bytes(3 << 19), "1.5 MiB");
        assert_eq!(iec_bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(si_bytes(999), "999 B");
        assert_eq!(si_bytes(2_100_000), "2.1 MB");
        assert_eq!(si_bytes(1_253_289_984), "1.3 GB");
        assert_eq!(si_bytes(25_000_000), "25 MB");
        assert_eq!(si_bytes(45_000), "45 kB");
    }
}
