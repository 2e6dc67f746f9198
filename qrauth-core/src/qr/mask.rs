//! Choosing the QR code's mask: the same choice as the `qrcode` crate's own, by the same
//! penalty rules, computed over a plain grid of booleans.
//!
//! Why not `QrCode::with_error_correction_level`: it scores each of the eight masks by
//! walking the canvas through closures it boxes once per module and direction, which made
//! the mask choice more than half of a whole login's server CPU (a `perf` profile of the
//! `flows` bench). Scoring a `Vec<bool>` gives the same mask, and so the very same image, in a
//! fraction of the time (`cargo bench -p qrauth-core --bench core -- qr`).
//!
//! The rules are ISO/IEC 18004 §7.8.3 as that crate applies them (it does not round the
//! balance to steps of 5 %, and counts finder-like patterns next to a light run of four
//! modules or the code's edge); keeping its exact rules keeps the images qrauth has always
//! rendered, which the unit test below checks against the crate for many contents.

use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::types::QrResult;
use qrcode::{Color, EcLevel, bits, ec};

/// The eight masks of a (non-micro) QR code, in the order the crate tries them: on equal
/// scores the first one wins.
const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// The modules of `content`'s QR code at `ec_level` (row-major, `width × width`) and its
/// width: what `QrCode::with_error_correction_level(content, ec_level)` holds.
pub(super) fn encode(content: &[u8], ec_level: EcLevel) -> QrResult<(Vec<Color>, usize)> {
    let bits = bits::encode_auto(content, ec_level)?;
    let version = bits.version();
    let (data, ec) = ec::construct_codewords(&bits.into_bytes(), version, ec_level)?;
    let mut canvas = Canvas::new(version, ec_level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let width = usize::try_from(version.width()).unwrap_or_default();

    let mut best: Option<(u32, Vec<Color>)> = None;
    let mut dark = Vec::with_capacity(width * width);
    for mask in MASKS {
        let mut masked = canvas.clone();
        masked.apply_mask(mask);
        let modules = masked.into_colors();
        dark.clear();
        dark.extend(modules.iter().map(|m| *m == Color::Dark));
        let score = penalty(&dark, width);
        if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
            best = Some((score, modules));
        }
    }
    let modules = best.map(|(_, modules)| modules).unwrap_or_default();
    Ok((modules, width))
}

/// The penalty of a masked symbol (`dark`, row-major, `width × width`); lower is better.
fn penalty(dark: &[bool], width: usize) -> u32 {
    if width == 0 {
        return 0;
    }
    // The columns as rows, so that both directions scan contiguous lines.
    let columns: Vec<bool> = (0..width * width)
        .map(|i| dark[(i % width) * width + i / width])
        .collect();
    let mut finder_like = [0u32; 2];
    let mut score = 0;
    for (direction, grid) in [dark, &columns].into_iter().enumerate() {
        for line in grid.chunks_exact(width) {
            score += runs(line);
            finder_like[direction] += finder_like_patterns(line);
        }
    }
    // The three finder patterns themselves always score 9 × 40 in each direction.
    score
        + finder_like
            .iter()
            .map(|s| s.saturating_sub(360))
            .sum::<u32>()
        + blocks(dark, width)
        + balance(dark)
}

/// N1: each run of five or more modules of one colour scores its length − 2.
fn runs(line: &[bool]) -> u32 {
    let mut score = 0;
    let mut run = 0u32;
    let mut colour = None;
    for &here in line {
        if colour == Some(here) {
            run += 1;
        } else {
            if run >= 5 {
                score += run - 2;
            }
            colour = Some(here);
            run = 1;
        }
    }
    if run >= 5 {
        score += run - 2;
    }
    score
}

/// N3: each dark-light-dark×3-light-dark pattern with four light modules (or the edge) on
/// either side scores 40.
fn finder_like_patterns(line: &[bool]) -> u32 {
    const PATTERN: [bool; 7] = [true, false, true, true, true, false, true];
    let mut score = 0;
    for (j, window) in line.windows(7).enumerate() {
        if window != PATTERN {
            continue;
        }
        let light_before = !line[j.saturating_sub(4)..j].contains(&true);
        let light_after = !line[j + 7..(j + 11).min(line.len())].contains(&true);
        if light_before || light_after {
            score += 40;
        }
    }
    score
}

/// N2: each 2×2 block of one colour (overlapping ones counted) scores 3.
fn blocks(dark: &[bool], width: usize) -> u32 {
    let mut score = 0;
    for (upper, lower) in dark
        .chunks_exact(width)
        .zip(dark.chunks_exact(width).skip(1))
    {
        for x in 0..width - 1 {
            let here = upper[x];
            if upper[x + 1] == here && lower[x] == here && lower[x + 1] == here {
                score += 3;
            }
        }
    }
    score
}

/// N4: the deviation of the dark share from 50 %, in half-percent steps.
fn balance(dark: &[bool]) -> u32 {
    let count = dark.iter().filter(|d| **d).count();
    let ratio = count * 200 / dark.len().max(1);
    u32::try_from(ratio.abs_diff(100)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use qrcode::QrCode;

    use super::*;

    /// Contents of the shapes qrauth renders (phone URLs with ids and scan tokens, bare
    /// tokens, digits) and of every length up to a few hundred bytes.
    fn contents() -> Vec<String> {
        let mut all = Vec::new();
        for n in 0..300usize {
            let id: String = (0..22)
                .map(|k| {
                    let c = (n * 31 + k * 7) % 64;
                    char::from(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[c],
                    )
                })
                .collect();
            all.push(format!(
                "https://login.example.com/qrauth/phone?qrcodeId={id}&scanToken={}",
                &id[..n % 22]
            ));
            all.push("x".repeat(n));
            all.push(n.to_string().repeat(n % 40 + 1));
        }
        all.push("扫码登录 ✓".into());
        all
    }

    #[test]
    fn same_modules_as_the_qrcode_crate() {
        for content in contents() {
            for ec_level in [EcLevel::L, EcLevel::M] {
                let expected =
                    QrCode::with_error_correction_level(content.as_bytes(), ec_level).unwrap();
                let (modules, width) = encode(content.as_bytes(), ec_level).unwrap();
                assert_eq!(width, expected.width(), "{content:?}");
                assert_eq!(modules, expected.to_colors(), "{content:?} at {ec_level:?}");
            }
        }
    }

    #[test]
    fn penalties_follow_the_rules() {
        // A 6×6 light grid: each line one run of 6 (4 each, 12 lines), 25 blocks of 3, no
        // finder-like pattern, all light (deviation 100).
        let light = [false; 36];
        assert_eq!(penalty(&light, 6), 12 * 4 + 25 * 3 + 100);
        // A checkerboard: no runs, no blocks, exactly balanced.
        let board: Vec<bool> = (0..36).map(|i| (i / 6 + i % 6) % 2 == 0).collect();
        assert_eq!(penalty(&board, 6), 0);
    }

    #[test]
    fn too_long_content_is_an_error() {
        assert!(encode("x".repeat(10_000).as_bytes(), EcLevel::M).is_err());
    }
}
