//! torch's strided views (storage offset, sizes, strides), checked against their storage and
//! materialized as contiguous row-major bytes.

use std::borrow::Cow;

#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub shape: Vec<usize>,
    strides: Vec<usize>,
    /// In elements.
    offset: usize,
}

impl Layout {
    /// Checks that every element of the view lies inside a storage of `storage_len` elements, so
    /// that [`Layout::gather`] never indexes out of bounds.
    pub fn new(
        offset: u64,
        shape: &[u64],
        strides: &[u64],
        storage_len: usize,
    ) -> Result<Self, String> {
        if shape.len() != strides.len() {
            return Err(format!(
                "size {shape:?} and stride {strides:?} differ in length"
            ));
        }
        let overflow = || format!("view size {shape:?} stride {strides:?} overflows");
        let to_usize = |v: &[u64]| -> Result<Vec<usize>, String> {
            v.iter()
                .map(|&d| usize::try_from(d).map_err(|_| overflow()))
                .collect()
        };
        let layout = Self {
            shape: to_usize(shape)?,
            strides: to_usize(strides)?,
            offset: usize::try_from(offset).map_err(|_| overflow())?,
        };
        let numel = layout
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(overflow)?;
        if numel == 0 {
            return Ok(layout);
        }
        // Strides are non-negative, so the last element is the farthest one.
        let last = layout
            .shape
            .iter()
            .zip(&layout.strides)
            .try_fold(layout.offset, |end, (&d, &s)| {
                end.checked_add((d - 1).checked_mul(s)?)
            })
            .ok_or_else(overflow)?;
        if last >= storage_len {
            return Err(format!(
                "view (offset {offset}, size {shape:?}, stride {strides:?}) reaches element \
                 {last} of a storage of {storage_len} elements"
            ));
        }
        Ok(layout)
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The view's elements in row-major order, borrowed when they already lie that way.
    pub fn gather<'a>(&self, storage: &'a [u8], elem: usize) -> Cow<'a, [u8]> {
        let numel = self.numel();
        if numel == 0 {
            return Cow::Borrowed(&[]);
        }
        if self.is_contiguous() {
            return Cow::Borrowed(&storage[self.offset * elem..(self.offset + numel) * elem]);
        }
        let Some((&inner, outer)) = self.shape.split_last() else {
            // A 0-dim view is always contiguous.
            return Cow::Borrowed(&[]);
        };
        let inner_stride = self.strides[outer.len()];
        let mut out = Vec::with_capacity(numel * elem);
        let mut index = vec![0; outer.len()];
        loop {
            let base = self.offset
                + index
                    .iter()
                    .zip(&self.strides)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            if inner_stride == 1 {
                out.extend_from_slice(&storage[base * elem..(base + inner) * elem]);
            } else {
                for i in 0..inner {
                    let at = (base + i * inner_stride) * elem;
                    out.extend_from_slice(&storage[at..at + elem]);
                }
            }
            // Odometer over the outer dims, last dim fastest.
            let mut d = outer.len();
            loop {
                if d == 0 {
                    return Cow::Owned(out);
                }
                d -= 1;
                index[d] += 1;
                if index[d] < outer[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn transpose_and_expand_gather_row_major() {
        let s = storage(6);
        let t = Layout::new(0, &[3, 2], &[1, 3], 6).unwrap();
        assert_eq!(t.gather(&s, 1).as_ref(), &[0, 3, 1, 4, 2, 5]);
        let e = Layout::new(1, &[2, 3], &[0, 1], 6).unwrap();
        assert_eq!(e.gather(&s, 1).as_ref(), &[1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn contiguous_views_borrow() {
        let s = storage(16);
        let row = Layout::new(2, &[1, 3, 1], &[9, 1, 7], 8).unwrap();
        assert!(matches!(row.gather(&s, 2), Cow::Borrowed(b) if b == [4, 5, 6, 7, 8, 9]));
        let scalar = Layout::new(7, &[], &[], 16).unwrap();
        assert_eq!(scalar.gather(&s, 1).as_ref(), &[7]);
    }

    #[test]
    fn out_of_bounds_views_are_refused() {
        assert!(Layout::new(0, &[2, 3], &[3, 1], 5).is_err());
        assert!(Layout::new(6, &[1], &[1], 6).is_err());
        assert!(Layout::new(0, &[2], &[1, 1], 6).is_err());
        assert!(Layout::new(0, &[u64::MAX, 2], &[u64::MAX, 1], 6).is_err());
        assert!(Layout::new(99, &[0, 4], &[4, 1], 6).is_ok());
    }
}
