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

/// A layer's response future as its own opaque type (tower-http's `opaque_future!`): a public
/// struct whose only field, the shared future from `crate::future` that does the work, is
/// private, with a `pub(crate)` constructor. Users can name the type; they cannot build one or see
/// its state, so the shared futures stay free to change.
#[allow(unused_macros)] // not every feature set has a layer that uses it
macro_rules! opaque_future {
    ($(#[$meta:meta])* pub type $name:ident<F> = $actual:ty;) => {
        $crate::macros::opaque_future!(@define $(#[$meta])* $name [F] [F, E] $actual);
    };
    ($(#[$meta:meta])* pub type $name:ident<F, E> = $actual:ty;) => {
        $crate::macros::opaque_future!(@define $(#[$meta])* $name [F, E] [F, E] $actual);
    };
    (@define $(#[$meta:meta])* $name:ident [$($param:ident),+] [$($impl_param:ident),+] $actual:ty) => {
        pin_project_lite::pin_project! {
            $(#[$meta])*
            pub struct $name<$($param),+> {
                #[pin]
                inner: $actual,
            }
        }

        impl<$($param),+> $name<$($param),+> {
            pub(crate) fn new(inner: $actual) -> Self {
                Self { inner }
            }
        }

        impl<$($param),+> std::fmt::Debug for $name<$($param),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<$($impl_param),+> std::future::Future for $name<$($param),+>
        where
            F: std::future::Future<Output = Result<$crate::request::GuardResponse, E>>,
        {
            type Output = Result<$crate::request::GuardResponse, E>;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use opaque_future;

/// A service's `poll_ready` that is its inner service's: the layers never hold requests back
/// themselves (a refusal is a response, not back-pressure).
#[allow(unused_macros)] // not every feature set has a layer that uses it
macro_rules! poll_ready_from_inner {
    () => {
        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }
    };
}

#[allow(unused_imports)]
pub(crate) use poll_ready_from_inner;

/// A layer's service and the [`Layer`](tower_layer::Layer) impl that makes it: the service struct
/// holds `inner` and a clone of each listed field of the layer, and gets the
/// [`inner_service_accessors!`] methods.
///
/// ```text
/// layer_service! {
///     /// The service produced by [`IngressLayer`].
///     #[derive(Debug, Clone)]
///     pub struct Ingress<S> from IngressLayer { config: Arc<Config> }
/// }
/// ```
#[allow(unused_macros)] // not every feature set has a layer that uses it
macro_rules! layer_service {
    (
        $(#[$meta:meta])*
        pub struct $service:ident<S> from $layer:ident { $($field:ident: $ty:ty),* $(,)? }
    ) => {
        $(#[$meta])*
        pub struct $service<S> {
            inner: S,
            $($field: $ty,)*
        }

        impl<S> tower_layer::Layer<S> for $layer {
            type Service = $service<S>;

            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner,
                    $($field: self.$field.clone(),)*
                }
            }
        }

        $crate::macros::inner_service_accessors!($service);
    };
}

#[allow(unused_imports)]
pub(crate) use layer_service;

/// A layer whose service runs a synchronous check before the inner service: `Ok(())` passes the
/// request on, `Err(rejection)` answers with it. The service (holding `inner` and a clone of the
/// layer) and its future are defined in a private module `service`, so they are reachable only
/// as `<Layer as tower::Layer<S>>::Service`, never named.
///
/// ```text
/// check_service! {
///     /// The service made by [`AuthzLayer`].
///     Authz for AuthzLayer, |layer, req| layer.decide(req)
/// }
/// ```
#[allow(unused_macros)] // not every feature set has a layer that uses it
macro_rules! check_service {
    ($(#[$meta:meta])* $service:ident for $layer:ident, |$this:ident, $req:ident| $check:expr) => {
        mod service {
            #[allow(unused_imports)]
            use super::*;
            use $crate::future::CheckFuture;
            use $crate::request::{GuardRequest, GuardResponse};

            $(#[$meta])*
            #[derive(Debug, Clone)]
            pub struct $service<S> {
                inner: S,
                layer: $layer,
            }

            impl<S> $service<S> {
                pub(super) fn new(inner: S, layer: $layer) -> Self {
                    Self { inner, layer }
                }
            }

            $crate::macros::inner_service_accessors!($service);

            $crate::macros::opaque_future! {
                /// The response future of the service.
                pub type ResponseFuture<F> = CheckFuture<F>;
            }

            impl<S> tower_service::Service<GuardRequest> for $service<S>
            where
                S: tower_service::Service<GuardRequest, Response = GuardResponse>,
            {
                type Response = GuardResponse;
                type Error = S::Error;
                type Future = ResponseFuture<S::Future>;

                $crate::macros::poll_ready_from_inner!();

                fn call(&mut self, req: GuardRequest) -> Self::Future {
                    let verdict = {
                        let $this = &self.layer;
                        let $req = &req;
                        $check
                    };
                    match verdict {
                        Ok(()) => ResponseFuture::new(CheckFuture::inner(self.inner.call(req))),
                        Err(r) => ResponseFuture::new(CheckFuture::rejected(r.into_response())),
                    }
                }
            }
        }

        impl<S> tower_layer::Layer<S> for $layer {
            type Service = service::$service<S>;

            fn layer(&self, inner: S) -> Self::Service {
                service::$service::new(inner, self.clone())
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use check_service;

/// `Service<GuardRequest>` for a layer's service that forwards to its inner service: the bounds,
/// `Response` / `Error` (the inner service's) and [`poll_ready_from_inner!`]; the invocation
/// gives the `Future` type and `call`. `impl owning for` adds the bounds of a future that may own
/// a clone of the inner service (`S: Clone + Send + 'static`, its future and error `Send`).
#[allow(unused_macros)] // not every feature set has a layer that uses it
macro_rules! forwarding_service {
    (impl for $service:ident<S> { $($body:tt)* }) => {
        $crate::macros::forwarding_service!(@impl $service [] $($body)*);
    };
    (impl owning for $service:ident<S> { $($body:tt)* }) => {
        $crate::macros::forwarding_service!(
            @impl $service
            [+ Clone + Send + 'static, S::Future: Send + 'static, S::Error: Send + 'static]
            $($body)*
        );
    };
    (@impl $service:ident [$($bounds:tt)*] type Future = $future:ty; $($call:tt)*) => {
        impl<S> tower_service::Service<$crate::GuardRequest> for $service<S>
        where
            S: tower_service::Service<$crate::GuardRequest, Response = $crate::GuardResponse>
                $($bounds)*
        {
            type Response = $crate::GuardResponse;
            type Error = S::Error;
            type Future = $future;

            $crate::macros::poll_ready_from_inner!();

            $($call)*
        }
    };
}

#[allow(unused_imports)]
pub(crate) use forwarding_service;

/// [`Verifier`](crate::verify::Verifier) for a type whose synchronous
/// `check(&self, &GuardRequest) -> Result<Principal, Rejection>` decides. With `pure` (a check
/// without side effects: no I/O, no replay store, no counters) `verify_now` answers with it too.
#[allow(unused_macros)] // not every feature set has a verifier
macro_rules! verifier_from_check {
    (@now pure) => {
        fn verify_now(
            &self,
            req: &$crate::GuardRequest,
        ) -> Option<Result<$crate::request::Principal, $crate::Rejection>> {
            Some(self.check(req))
        }
    };
    ($type:ty $(, $pure:ident)?) => {
        impl $crate::verify::Verifier for $type {
            fn verify<'a>(
                &'a self,
                req: &'a $crate::GuardRequest,
            ) -> $crate::verify::VerifyFuture<'a> {
                let verdict = self.check(req);
                Box::pin(async move { verdict })
            }

            $($crate::macros::verifier_from_check!(@now $pure);)?
        }
    };
}

#[allow(unused_imports)]
pub(crate) use verifier_from_check;
