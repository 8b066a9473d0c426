//! CRC-32C (Castagnoli), the checksum of `etcdutl snapshot status`'s hash.
//!
//! Implemented here rather than taken from a crate: the workspace's only CRC crate is
//! `crc32fast`, which computes the IEEE polynomial, and a byte-wise table lookup is a dozen
//! lines. Status reads every byte once, so its speed is bounded by the disk, not this loop.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// One entry per byte value: the CRC of that byte alone, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// A running CRC-32C, fed in pieces like Go's `hash.Hash32`.
#[derive(Clone, Debug)]
pub struct Crc32c {
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// The CRC of no bytes so far.
    pub fn new() -> Self {
        Crc32c { state: !0 }
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.state;
        for &b in bytes {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    /// The checksum of every byte added so far.
    pub fn finish(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    #[test]
    fn known_vectors() {
        let mut c = Crc32c::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xE306_9283);
        assert_eq!(Crc32c::new().finish(), 0);
        // Feeding in pieces gives the same result as feeding at once.
        let mut pieces = Crc32c::new();
        for part in [&b"1234"[..], b"", b"56789"] {
            pieces.update(part);
        }
        assert_eq!(pieces.finish(), 0xE306_9283);
        // 32 zero bytes, the iSCSI test vector of RFC 3720.
        let mut zeros = Crc32c::new();
        zeros.update(&[0u8; 32]);
        assert_eq!(zeros.finish(), 0x8A91_36AA);
    }
}
