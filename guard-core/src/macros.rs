//! Internal macros shared by the layers.

/// `get_ref` / `get_mut` / `into_inner` for a layer's service whose inner service is in `inner`
/// (tower-http's pattern: one macro instead of the same three methods in every module). Exported,
/// hidden, for the adapter crates' services.
#[macro_export]
#[doc(hidden)]
macro_rules! inner_service_accessors {
    ($service:ident) => {
        impl<S> $service<S> {
            /// The inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The inner service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Unwraps the inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use inner_service_accessors;
