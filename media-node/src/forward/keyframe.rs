//! Keyframe detection from RTP payloads (VP8, VP9, H.264), so a subscriber switches simulcast
//! layers only where the decoder can start. Any byte slice is accepted; short or malformed
//! payloads are simply "not a keyframe".

/// Codecs the forwarder understands for keyframe detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Opus or any other audio codec: every packet is a switching point.
    Audio,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184).
    H264,
    /// A video codec without keyframe detection: layer switches are never attempted.
    OtherVideo,
}

impl Codec {
    /// The codec for an RTP mime type such as `video/VP8`.
    pub fn from_mime(mime: &str) -> Codec {
        let mime = mime.to_ascii_lowercase();
        match mime.as_str() {
            "video/vp8" => Codec::Vp8,
            "video/vp9" => Codec::Vp9,
            "video/h264" => Codec::H264,
            m if m.starts_with("audio/") => Codec::Audio,
            _ => Codec::OtherVideo,
        }
    }
}

/// True when `payload` starts a keyframe of `codec`.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Audio => true,
        Codec::Vp8 => vp8_keyframe(payload),
        Codec::Vp9 => vp9_keyframe(payload),
        Codec::H264 => h264_keyframe(payload),
        Codec::OtherVideo => false,
    }
}

fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // Picture id: one byte, or two when its M bit is set.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // VP8 payload header: P bit (0 = key frame) is the lowest bit of the first byte.
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

fn vp9_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let inter_predicted = first & 0x40 != 0;
    let begins_frame = first & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    let layered = first & 0x20 != 0;
    if !layered {
        return true;
    }
    // With layer indices, only the base spatial layer starts a decodable picture.
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&pid) = p.get(i) else { return false };
        i += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    p.get(i).is_some_and(|b| (b >> 1) & 0x07 == 0)
}

fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        24 => stap_a_has_keyframe(&p[1..]),
        28 => {
            // FU-A: the start of a fragmented IDR.
            p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5)
        }
        _ => false,
    }
}

fn stap_a_has_keyframe(mut p: &[u8]) -> bool {
    while p.len() > 2 {
        let size = usize::from(u16::from_be_bytes([p[0], p[1]]));
        let Some(nal) = p.get(2..2 + size) else {
            return false;
        };
        if nal.first().is_some_and(|b| matches!(b & 0x1f, 5 | 7)) {
            return true;
        }
        p = &p[2 + size..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vp8_plain_descriptor() {
        // S=1, PID=0, then a payload header with P=0 (key frame).
        assert!(is_keyframe(Codec::Vp8, &[0x10, 0x00, 0x9d]));
        // P=1: inter frame.
        assert!(!is_keyframe(Codec::Vp8, &[0x10, 0x01, 0x9d]));
        // Not the start of a partition.
        assert!(!is_keyframe(Codec::Vp8, &[0x00, 0x00]));
    }

    #[test]
    fn vp8_extended_descriptor_with_two_byte_picture_id() {
        // X=1,S=1 | I=1,L=1 | picture id 0x8123 | tl0picidx | payload header P=0
        assert!(is_keyframe(
            Codec::Vp8,
            &[0x90, 0xc0, 0x81, 0x23, 0x05, 0x50]
        ));
        assert!(!is_keyframe(
            Codec::Vp8,
            &[0x90, 0xc0, 0x81, 0x23, 0x05, 0x51]
        ));
        // Truncated.
        assert!(!is_keyframe(Codec::Vp8, &[0x90, 0xc0, 0x81]));
    }

    #[test]
    fn vp9_flags() {
        // B=1, P=0, no layers.
        assert!(is_keyframe(Codec::Vp9, &[0x08]));
        // P=1.
        assert!(!is_keyframe(Codec::Vp9, &[0x48]));
        // L=1, I=1 one-byte pid, spatial id 1: not the base layer.
        assert!(!is_keyframe(Codec::Vp9, &[0xa8, 0x01, 0x02]));
        assert!(is_keyframe(Codec::Vp9, &[0xa8, 0x01, 0x00]));
    }

    #[test]
    fn h264_units() {
        assert!(is_keyframe(Codec::H264, &[0x65]));
        assert!(is_keyframe(Codec::H264, &[0x67]));
        assert!(!is_keyframe(Codec::H264, &[0x41]));
        assert!(is_keyframe(Codec::H264, &[0x7c, 0x85]));
        assert!(!is_keyframe(Codec::H264, &[0x7c, 0x05]));
        // STAP-A holding an SPS.
        assert!(is_keyframe(Codec::H264, &[0x78, 0x00, 0x01, 0x67]));
        assert!(!is_keyframe(Codec::H264, &[0x78, 0x00, 0x01, 0x41]));
        assert!(!is_keyframe(Codec::H264, &[0x78, 0x00, 0x09, 0x67]));
    }

    #[test]
    fn codec_names() {
        assert_eq!(Codec::from_mime("video/VP8"), Codec::Vp8);
        assert_eq!(Codec::from_mime("audio/opus"), Codec::Audio);
        assert_eq!(Codec::from_mime("video/AV1"), Codec::OtherVideo);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for codec in [Codec::Vp8, Codec::Vp9, Codec::H264] {
                let _ = is_keyframe(codec, &bytes);
            }
        }
    }
}
