//! What an uploaded file really is, whatever its name or declared type: magic bytes against an allow-list (JPEG,
//! PNG, WebP; never SVG, HTML or PDF), dimensions within caps, and the same image without its metadata (EXIF with
//! GPS, XMP, IPTC, comments), losslessly: the pixels are not re-encoded.

use axum::body::Bytes;
use img_parts::{ImageEXIF, ImageICC};

/// An image format on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::WebP => "image/webp",
        }
    }

    /// The extension of the content-addressed key, from the sniff (never from the client).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::WebP => "webp",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "jpg" => Some(Format::Jpeg),
            "png" => Some(Format::Png),
            "webp" => Some(Format::WebP),
            _ => None,
        }
    }
}

/// Why a file is refused, each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// `unsupported_file_type`: not JPEG, PNG or WebP by its bytes (named: what it looks like).
    UnsupportedType(String),
    /// `image_unreadable`: the right magic bytes, but no readable image structure.
    Unreadable,
    /// `image_too_large`: wider/taller than the cap or more pixels than allowed.
    TooManyPixels { width: u32, height: u32 },
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnsupportedType(_) => "unsupported_file_type",
            Rejection::Unreadable => "image_unreadable",
            Rejection::TooManyPixels { .. } => "image_too_large",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Rejection::UnsupportedType(seen) => format!("only JPEG, PNG and WebP images are accepted (this is {seen})"),
            Rejection::Unreadable => "the file is not a readable image".into(),
            Rejection::TooManyPixels { width, height } => format!("{width}x{height} is over the size limit"),
        }
    }
}

/// The checked image, metadata stripped.
#[derive(Debug)]
pub struct Checked {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub bytes: Bytes,
}

/// Sniffs, measures and strips `data`.
pub fn check(data: Bytes, max_dimension: u32, max_megapixels: u32) -> Result<Checked, Rejection> {
    let format = sniff(&data)?;
    let size = imagesize::blob_size(&data).map_err(|_| Rejection::Unreadable)?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 {
        return Err(Rejection::Unreadable);
    }
    if width > max_dimension as u64
        || height > max_dimension as u64
        || width * height > max_megapixels as u64 * 1_000_000
    {
        return Err(Rejection::TooManyPixels {
            width: width.min(u32::MAX as u64) as u32,
            height: height.min(u32::MAX as u64) as u32,
        });
    }
    let bytes = strip_metadata(format, data)?;
    Ok(Checked { format, width: width as u32, height: height as u32, bytes })
}

fn sniff(data: &[u8]) -> Result<Format, Rejection> {
    match infer::get(data) {
        Some(kind) => match kind.mime_type() {
            "image/jpeg" => Ok(Format::Jpeg),
            "image/png" => Ok(Format::Png),
            "image/webp" => Ok(Format::WebP),
            "text/html" => Err(Rejection::UnsupportedType("HTML".into())),
            "text/xml" | "application/xml" | "image/svg+xml" => Err(Rejection::UnsupportedType("SVG/XML".into())),
            "application/pdf" => Err(Rejection::UnsupportedType("PDF".into())),
            other => Err(Rejection::UnsupportedType(other.to_owned())),
        },
        None => {
            let head = String::from_utf8_lossy(&data[..data.len().min(256)]).to_ascii_lowercase();
            let seen = if head.contains("<svg") || head.contains("<?xml") {
                "SVG/XML"
            } else if head.contains("<html") || head.contains("<!doctype") || head.contains("<script") {
                "HTML"
            } else {
                "an unknown format"
            };
            Err(Rejection::UnsupportedType(seen.to_owned()))
        }
    }
}

/// The image without EXIF (GPS, camera serials), XMP, IPTC or comments; the colour profile stays.
fn strip_metadata(format: Format, data: Bytes) -> Result<Bytes, Rejection> {
    use img_parts::jpeg::{markers, Jpeg};
    match format {
        Format::Jpeg => {
            let mut jpeg = Jpeg::from_bytes(data).map_err(|_| Rejection::Unreadable)?;
            let icc = jpeg.icc_profile();
            // APP1 carries both EXIF and XMP; APP13 Photoshop/IPTC; COM free text.
            for marker in [markers::APP1, markers::APP13, markers::COM] {
                jpeg.remove_segments_by_marker(marker);
            }
            jpeg.set_icc_profile(icc);
            Ok(jpeg.encoder().bytes())
        }
        Format::Png => {
            let mut png = img_parts::png::Png::from_bytes(data).map_err(|_| Rejection::Unreadable)?;
            png.set_exif(None);
            for kind in [*b"tEXt", *b"zTXt", *b"iTXt", *b"tIME"] {
                png.remove_chunks_by_type(kind);
            }
            Ok(png.encoder().bytes())
        }
        Format::WebP => {
            let mut webp = img_parts::webp::WebP::from_bytes(data).map_err(|_| Rejection::Unreadable)?;
            webp.set_exif(None);
            webp.remove_chunks_by_id(img_parts::webp::CHUNK_XMP);
            Ok(webp.encoder().bytes())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 1×1 baseline JPEG with an APP1 EXIF segment holding a GPS marker string and a comment.
    pub fn jpeg_with_gps() -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        // APP0 JFIF
        out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
        // APP1 "Exif\0\0" + a fake TIFF body carrying a GPS tag marker
        let exif_body = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude=31.2304N";
        let len = (exif_body.len() + 2) as u16;
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(exif_body);
        // COM
        let comment = b"shot at home";
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(comment);
        out.extend_from_slice(MINIMAL_JPEG_BODY);
        out
    }

    /// DQT, SOF0 (1×1, one component), DHT (DC and AC), SOS and the scan of a 1×1 grey baseline JPEG, then EOI.
    pub const MINIMAL_JPEG_BODY: &[u8] = &[
        0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07, 0x07, 0x09, 0x09, 0x08,
        0x0A, 0x0C, 0x14, 0x0D, 0x0C, 0x0B, 0x0B, 0x0C, 0x19, 0x12, 0x13, 0x0F, 0x14, 0x1D, 0x1A, 0x1F, 0x1E, 0x1D,
        0x1A, 0x1C, 0x1C, 0x20, 0x24, 0x2E, 0x27, 0x20, 0x22, 0x2C, 0x23, 0x1C, 0x1C, 0x28, 0x37, 0x29, 0x2C, 0x30,
        0x31, 0x34, 0x34, 0x34, 0x1F, 0x27, 0x39, 0x3D, 0x38, 0x32, 0x3C, 0x2E, 0x33, 0x34, 0x32, 0xFF, 0xC0, 0x00,
        0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0xFF, 0xC4,
        0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x37, 0xFF, 0xD9,
    ];

    #[test]
    fn a_jpeg_is_measured_and_loses_its_exif_and_comment() {
        let checked = check(Bytes::from(jpeg_with_gps()), 8192, 40).unwrap();
        assert_eq!((checked.format, checked.width, checked.height), (Format::Jpeg, 1, 1));
        let text = String::from_utf8_lossy(&checked.bytes);
        assert!(!text.contains("GPSLatitude") && !text.contains("Exif") && !text.contains("shot at home"), "{text}");
        assert!(text.contains("JFIF"));
        assert!(checked.bytes.ends_with(&[0xFF, 0xD9]));
    }

    #[test]
    fn html_svg_and_pdf_are_refused_whatever_their_name() {
        for (body, seen) in [
            (&b"<!DOCTYPE html><html><script>alert(1)</script></html>"[..], "HTML"),
            (&b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"[..], "SVG/XML"),
        ] {
            let error = check(Bytes::from_static(body), 8192, 40).unwrap_err();
            assert_eq!(error, Rejection::UnsupportedType(seen.into()));
            assert_eq!(error.code(), "unsupported_file_type");
        }
        let pdf = check(Bytes::from_static(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), 8192, 40).unwrap_err();
        assert_eq!(pdf.code(), "unsupported_file_type");
        // JPEG magic, nothing else.
        assert_eq!(
            check(Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), 8192, 40).unwrap_err().code(),
            "image_unreadable"
        );
    }

    #[test]
    fn pixel_caps_hold() {
        let mut jpeg = jpeg_with_gps();
        // SOF0 height/width: patch 1×1 to 9000×1.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 7] = (9000u16 >> 8) as u8;
        jpeg[sof + 8] = (9000u16 & 0xFF) as u8;
        assert_eq!(check(Bytes::from(jpeg), 8192, 40).unwrap_err().code(), "image_too_large");
    }
}
