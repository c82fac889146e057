//! A vector that holds at least one element.

use std::ops::Deref;

/// A `Vec` that is never empty: an append of zero events cannot be written.
///
/// ```
/// use sourcery_core::store::NonEmpty;
///
/// let mut batch = NonEmpty::new(1);
/// batch.push(2);
/// assert_eq!(batch.first(), &1);
/// assert_eq!(batch.len(), 2);
/// assert!(NonEmpty::<u8>::from_vec(Vec::new()).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    /// A batch holding `first`.
    pub fn new(first: T) -> Self {
        Self(vec![first])
    }

    /// The elements of `vec`, or `None` when it is empty.
    #[must_use]
    pub fn from_vec(vec: Vec<T>) -> Option<Self> {
        if vec.is_empty() { None } else { Some(Self(vec)) }
    }

    /// Adds an element at the end.
    pub fn push(&mut self, value: T) {
        self.0.push(value);
    }

    /// The first element.
    #[must_use]
    pub fn first(&self) -> &T {
        // Invariant: the vector is never empty, every constructor checks it.
        &self.0[0]
    }

    /// The last element.
    #[must_use]
    pub fn last(&self) -> &T {
        // Invariant: the vector is never empty, every constructor checks it.
        &self.0[self.0.len() - 1]
    }

    /// The number of elements, at least one.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`; here for clippy's `len_without_is_empty` and for
    /// symmetry with slices.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The elements as a `Vec`.
    #[must_use]
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T> Deref for NonEmpty<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> IntoIterator for NonEmpty<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a NonEmpty<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> From<NonEmpty<T>> for Vec<T> {
    fn from(value: NonEmpty<T>) -> Self {
        value.0
    }
}

impl<T> TryFrom<Vec<T>> for NonEmpty<T> {
    type Error = Vec<T>;

    /// Fails with the (empty) vector handed back.
    fn try_from(vec: Vec<T>) -> Result<Self, Vec<T>> {
        if vec.is_empty() { Err(vec) } else { Ok(Self(vec)) }
    }
}
