//! A value that can be swapped at run time (SIGHUP reload) while readers keep a consistent snapshot.

use std::sync::{Arc, RwLock};

/// Shared, replaceable value: readers take an `Arc` snapshot with [`Reloadable::load`] (a read lock held only
/// for an `Arc` clone), a reload installs a new value with [`Reloadable::store`]. Clones share the value.
///
/// A poor man's `ArcSwap` (arc-swap is not in the dependency graph); the lock is never held across I/O, so
/// contention is negligible at accept rates. The listeners keep their allow-list and their rustls
/// configuration in one, the domain its e-Service registry.
#[derive(Debug)]
pub struct Reloadable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Reloadable<T> {
    /// Wraps an initial value.
    pub fn new(value: T) -> Self {
        Self::from_arc(Arc::new(value))
    }

    /// Wraps an initial shared value.
    pub fn from_arc(value: Arc<T>) -> Self {
        Self(Arc::new(RwLock::new(value)))
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        // The guarded value is a plain Arc: a panicking writer cannot leave it half-updated, so ignore poison.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value; connections accepted afterwards see the new one.
    pub fn store(&self, value: T) {
        self.store_arc(Arc::new(value));
    }

    /// Replaces the value with a shared one.
    pub fn store_arc(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_value_and_snapshots_stay() {
        let a = Reloadable::new(1);
        let b = a.clone();
        let before = a.load();
        b.store(2);
        assert_eq!(*before, 1);
        assert_eq!(*a.load(), 2);
    }
}
