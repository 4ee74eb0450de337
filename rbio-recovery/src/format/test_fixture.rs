//! The layout the format's unit tests share: LMCache's c1000 fixture.

use super::{Geometry, Layout};

/// The c1000 fixture's layout: 4 MiB metadata, 64 KiB slots.
pub(super) fn c1000_layout() -> Layout {
    Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 4 << 20,
        ..Layout::default()
    }
}

/// Its geometry on the fixture's 72 MiB image.
pub(super) fn c1000_geometry() -> Geometry {
    c1000_layout().validate(72 << 20).unwrap()
}
