//! Which vector instructions the f32 kernels use, chosen at run time from the CPU's features.
//!
//! The kernels are written once, as plain Rust that the compiler vectorises, and compiled twice
//! through [`simd_variants!`]: once with AVX-512F and once with AVX2 + FMA. [`Simd::detect`] picks
//! the widest set the CPU has; a CPU with neither runs the portable kernels, which use the exact
//! (libm) activations. Holding a [`Simd`] value is the proof that the CPU supports its set: the
//! only constructors are [`Simd::detect`] and [`Simd::capped`], which ask the CPU.
//!
//! `SEQMODELS_SIMD=avx512|avx2|none` caps the choice (tests use it to run every variant on a CPU
//! that has the widest set); it never enables what the CPU lacks.

/// An instruction set the CPU was found to support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Simd(Level);

/// The sets in increasing order of width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Avx2,
    Avx512,
}

impl Simd {
    /// The widest supported set, capped by `SEQMODELS_SIMD` (read once per process); `None`
    /// when the CPU has neither AVX-512F nor AVX2 + FMA, or the variable says `none`.
    pub fn detect() -> Option<Simd> {
        static CHOICE: std::sync::OnceLock<Option<Simd>> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| Simd::capped(std::env::var("SEQMODELS_SIMD").ok().as_deref()))
    }

    /// The widest supported set at most as wide as `cap` (`"avx512"`, `"avx2"`, `"none"`; any
    /// other value or none means no cap).
    pub fn capped(cap: Option<&str>) -> Option<Simd> {
        let cap = match cap.map(str::trim) {
            Some("none") => return None,
            Some("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        Self::supported().into_iter().filter(|l| *l <= cap).max().map(Simd)
    }

    #[cfg(target_arch = "x86_64")]
    fn supported() -> Vec<Level> {
        let mut levels = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            levels.push(Level::Avx2);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            levels.push(Level::Avx512);
        }
        levels
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn supported() -> Vec<Level> {
        Vec::new()
    }

    /// Whether this is AVX-512F (else AVX2 + FMA).
    pub fn is_avx512(self) -> bool {
        self.0 == Level::Avx512
    }

    /// The set's name as `SEQMODELS_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
        }
    }
}

/// Defines a safe function `$name(simd: Simd, args...)` that runs `$body` compiled for the
/// instruction set `simd` names: the body is compiled twice, with `avx512f` and with
/// `avx2,fma`, and the generic code it calls (`#[inline(always)]`) is inlined and vectorised
/// in each.
macro_rules! simd_variants {
    ($(#[$attr:meta])* $vis:vis fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name$(<$lt>)?(simd: $crate::simd::Simd, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX-512F.
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512$(<$lt>)?($($arg: $ty),*) $(-> $ret)? $body
                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2$(<$lt>)?($($arg: $ty),*) $(-> $ret)? $body
                if simd.is_avx512() {
                    // SAFETY: a `Simd` naming AVX-512 is only made after the CPU reported AVX-512F.
                    unsafe { avx512($($arg),*) }
                } else {
                    // SAFETY: a `Simd` is only made after the CPU reported AVX2 and FMA.
                    unsafe { avx2($($arg),*) }
                }
            }
            // No `Simd` value is made off x86-64 (`Simd::detect` returns None there); the plain
            // body keeps this a total function.
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = simd;
                $body
            }
        }
    };
}
pub(crate) use simd_variants;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_never_enables_what_the_cpu_lacks() {
        assert_eq!(Simd::capped(Some("none")), None);
        let widest = Simd::capped(None);
        let avx2 = Simd::capped(Some("avx2"));
        assert!(avx2.is_none_or(|s| !s.is_avx512()), "avx2 cap gave {avx2:?}");
        #[cfg(target_arch = "x86_64")]
        {
            let has_avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            let has_avx512 = std::arch::is_x86_feature_detected!("avx512f");
            assert_eq!(widest.map(Simd::is_avx512), (has_avx2 || has_avx512).then_some(has_avx512));
            assert_eq!(avx2.is_some(), has_avx2);
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(widest, None);
    }
}
