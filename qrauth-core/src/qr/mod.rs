//! Rendering QR content (the `qrcodeContent` of `POST /qrcode`) as an SVG image and as the
//! `data:` URL sent in the response's `image` field.
//!
//! The image uses medium error correction (about 15 % of the code may be damaged or covered),
//! the standard four-module quiet zone, black on white, and is at least
//! [`MIN_DIMENSION`] pixels wide so that phones read it at arm's length from a desktop screen.
//! Each horizontal run of dark modules is one rectangle of the image's one path, in module
//! units scaled by the `viewBox`: about a third of the size of one square per module, which
//! every login's `POST /qrcode` answer carries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt::Write;

use qrcode::types::QrError;
use qrcode::{Color, EcLevel};

use crate::error::{Error, Result};

mod mask;

/// The prefix of every URL returned by [`svg_data_url`].
pub const DATA_URL_PREFIX: &str = "data:image/svg+xml;base64,";

/// Minimum width and height of the rendered image, in pixels (quiet zone included).
pub const MIN_DIMENSION: u32 = 200;

/// Content of up to this many bytes always fits in a QR code at the error-correction level used
/// here (version 40, level M, byte mode). Purely numeric or upper-case alphanumeric content can
/// be somewhat longer; anything longer fails with [`Error::Internal`].
pub const MAX_CONTENT_LEN: usize = 2331;

/// Medium: what a phone needs of a code on a screen, and a version smaller than `Q` or `H`.
const EC_LEVEL: EcLevel = EcLevel::M;

/// The standard quiet zone of a (non-micro) QR code, in modules.
const QUIET_ZONE: usize = 4;

const DARK: &str = "#000000";
const LIGHT: &str = "#ffffff";

/// Renders `content` as a standalone SVG document (with its XML declaration).
///
/// # Errors
///
/// [`Error::Internal`] if `content` does not fit in a QR code (see [`MAX_CONTENT_LEN`]). QR
/// content is produced by qrauth or its provider, never taken from a client, so a failure here
/// is a server-side problem (typically a far too long callback URL in the configuration).
///
/// For instance `svg("https://example.com/qrauth/scan?id=abc")` is an `<svg …>` document (the
/// module is private, so the examples are the unit tests below).
pub fn svg(content: &str) -> Result<String> {
    let (modules, width) = mask::encode(content.as_bytes(), EC_LEVEL).map_err(|e| {
        Error::Internal(match e {
            QrError::DataTooLong => format!(
                "QR content of {} bytes is too long to encode (at most about {MAX_CONTENT_LEN})",
                content.len()
            ),
            other => format!("cannot encode QR content: {other}"),
        })
    })?;
    Ok(render(&modules, width))
}

/// The SVG document of a QR code's `modules` (row-major, `width × width`).
fn render(modules: &[Color], width: usize) -> String {
    let side = width + 2 * QUIET_ZONE;
    // Whole pixels per module, the fewest that reach the minimum size.
    let side_px = u32::try_from(side).unwrap_or(u32::MAX);
    let pixels = MIN_DIMENSION
        .div_ceil(side_px.max(1))
        .saturating_mul(side_px);
    let mut svg = String::with_capacity(512 + modules.len() * 4);
    let _ = write!(
        svg,
        r#"<?xml version="1.0" standalone="yes"?><svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{pixels}" height="{pixels}" viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="{LIGHT}"/><path fill="{DARK}" d=""#
    );
    for (y, row) in modules.chunks_exact(width.max(1)).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != Color::Dark {
                x += 1;
                continue;
            }
            let run = row[x..].iter().take_while(|m| **m == Color::Dark).count();
            let _ = write!(
                svg,
                "M{} {}h{run}v1h-{run}z",
                x + QUIET_ZONE,
                y + QUIET_ZONE
            );
            x += run;
        }
    }
    svg.push_str(r#""/></svg>"#);
    svg
}

/// Renders `content` as a QR code and returns it as a `data:image/svg+xml;base64,…` URL, ready
/// for an `<img src>`.
///
/// # Errors
///
/// As [`svg()`].
///
/// The URL is [`DATA_URL_PREFIX`] followed by the base64 of [`svg()`]'s document; too much
/// content is an error, not a panic (see the unit tests below).
pub fn svg_data_url(content: &str) -> Result<String> {
    let svg = svg(content)?;
    let mut url = String::with_capacity(DATA_URL_PREFIX.len() + svg.len().div_ceil(3) * 4);
    url.push_str(DATA_URL_PREFIX);
    STANDARD.encode_string(svg.as_bytes(), &mut url);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENT: &str = "https://login.example.com/qrauth/scan?qrcodeId=3q2-7wAAAAAAAAAAAAAAAA";

    fn decode(url: &str) -> String {
        let b64 = url.strip_prefix(DATA_URL_PREFIX).expect("prefix");
        String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("utf-8")
    }

    /// The `width="…"` attribute of the root element.
    fn width_of(svg: &str) -> u32 {
        let start = svg.find("width=\"").expect("width") + "width=\"".len();
        let end = start + svg[start..].find('"').expect("closing quote");
        svg[start..end].parse().expect("number")
    }

    /// The dark modules the image's path paints, by reading its rectangles back.
    fn painted(svg: &str, side: usize) -> Vec<bool> {
        let d = &svg[svg.find(" d=\"").expect("path") + 4..];
        let d = &d[..d.find('"').expect("end of path")];
        let mut painted = vec![false; side * side];
        for rect in d.split('z').filter(|r| !r.is_empty()) {
            // M{x} {y}h{n}v1h-{n}
            let numbers: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect();
            let [x, y, n, one, back] = numbers[..] else {
                panic!("unexpected rectangle {rect:?}")
            };
            assert_eq!((one, back), (1, n), "{rect:?}");
            assert!(rect.starts_with('M') && rect.contains(&format!("h{n}v1h-{n}")));
            for cell in &mut painted[y * side + x..y * side + x + n] {
                assert!(!*cell, "painted twice");
                *cell = true;
            }
        }
        painted
    }

    #[test]
    fn the_path_paints_exactly_the_dark_modules_inside_the_quiet_zone() {
        for content in [CONTENT, "a", "扫码登录 ✓", &"x".repeat(500)] {
            let (modules, width) = mask::encode(content.as_bytes(), EC_LEVEL).unwrap();
            let side = width + 2 * QUIET_ZONE;
            let svg = svg(content).unwrap();
            assert!(
                svg.contains(&format!(r#"viewBox="0 0 {side} {side}""#)),
                "{svg}"
            );
            let mut expected = vec![false; side * side];
            for (i, m) in modules.iter().enumerate() {
                let (x, y) = (i % width + QUIET_ZONE, i / width + QUIET_ZONE);
                expected[y * side + x] = *m == Color::Dark;
            }
            assert_eq!(painted(&svg, side), expected, "{content:?}");
            // Whole pixels per module.
            assert_eq!(width_of(&svg) as usize % side, 0);
        }
    }

    #[test]
    fn data_url_has_the_prefix_and_decodes_to_an_svg() {
        let url = svg_data_url(CONTENT).unwrap();
        assert!(url.starts_with(DATA_URL_PREFIX));
        let svg = decode(&url);
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg, super::svg(CONTENT).unwrap());
    }

    #[test]
    fn image_is_black_on_white_with_minimum_size() {
        let svg = svg(CONTENT).unwrap();
        assert!(svg.contains(r##"fill="#000000""##));
        assert!(svg.contains(r##"fill="#ffffff""##));
        let w = width_of(&svg);
        assert!(w >= MIN_DIMENSION, "width {w}");
        assert!(w < 3 * MIN_DIMENSION, "width {w}");
        // A tiny content still gets a readable size.
        assert!(width_of(&super::svg("a").unwrap()) >= MIN_DIMENSION);
    }

    #[test]
    fn has_a_quiet_zone() {
        // With a quiet zone, the first drawn module starts away from the edge.
        let svg = svg(CONTENT).unwrap();
        let path = &svg[svg.find(" d=\"M").expect("path") + 5..];
        let x: u32 = path
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x > 0);
    }

    #[test]
    fn different_content_gives_a_different_image() {
        let a = svg_data_url(CONTENT).unwrap();
        let b = svg_data_url(&CONTENT.replace("3q2", "4q2")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, svg_data_url(CONTENT).unwrap(), "deterministic");
    }

    #[test]
    fn oversized_content_is_an_error_not_a_panic() {
        for content in [
            "x".repeat(10 * 1024),
            "é".repeat(5 * 1024),
            "9".repeat(10 * 1024),
        ] {
            let err = svg_data_url(&content).unwrap_err();
            assert!(matches!(err, Error::Internal(_)), "{err:?}");
            assert_eq!(err.code(), "server_error");
            assert!(err.to_string().contains("too long"), "{err}");
            // Internal details never reach a client.
            assert_eq!(err.public_description(), "internal server error");
        }
    }

    #[test]
    fn max_content_len_is_exact_for_byte_mode() {
        assert!(svg(&"x".repeat(MAX_CONTENT_LEN)).is_ok());
        assert!(svg(&"x".repeat(MAX_CONTENT_LEN + 1)).is_err());
    }

    #[test]
    fn empty_and_unicode_content_encode() {
        assert!(svg_data_url("").is_ok());
        assert!(svg_data_url("扫码登录 ✓").is_ok());
    }
}
