//! Integrations: a `tracing` layer counting logged warnings and errors, and a
//! `tower` layer counting HTTP requests and their latency.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tracing::field::{Field as TracingField, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;

use crate::recorder::Recorder;

/// A `tracing_subscriber` layer that counts events into a [`Recorder`]:
/// `WARN` → `warnings.count`, `ERROR` → `errors.count`, and an `ERROR`
/// event with a field `critical = true` → `criticals.count` instead.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let recorder = collector::Recorder::default();
/// let _guard = tracing_subscriber::registry()
///     .with(collector::TracingLayer::new(recorder.clone()))
///     .set_default();
/// tracing::error!(critical = true, "disk full");
/// ```
#[derive(Debug, Clone)]
pub struct TracingLayer {
    recorder: Recorder,
}

impl TracingLayer {
    /// A layer counting into `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        TracingLayer { recorder }
    }
}

struct CriticalVisitor(bool);

impl Visit for CriticalVisitor {
    fn record_bool(&mut self, field: &TracingField, value: bool) {
        if field.name() == "critical" && value {
            self.0 = true;
        }
    }
    fn record_debug(&mut self, _field: &TracingField, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for TracingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let level = *event.metadata().level();
        if level == Level::WARN {
            self.recorder.warning();
        } else if level == Level::ERROR {
            let mut v = CriticalVisitor(false);
            event.record(&mut v);
            if v.0 {
                self.recorder.critical();
            } else {
                self.recorder.error();
            }
        }
    }
}

/// A `tower` layer for HTTP services: when the response (its headers) is
/// ready, adds one request and its latency to a [`Recorder`] and sets
/// `X-Response-Time: <ms>ms` (3 decimals), as the original middleware did.
/// A service error (no response) is not counted.
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    recorder: Recorder,
}

impl RequestMetricsLayer {
    /// A layer counting into `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        RequestMetricsLayer { recorder }
    }
}

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

/// The service made by [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    recorder: Recorder,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RequestMetrics<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            recorder: self.recorder.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestMetrics`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        recorder: Recorder,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(result.map(|mut res| {
            let elapsed = this.start.elapsed();
            this.recorder.request(elapsed);
            let ms = elapsed.as_secs_f64() * 1000.0;
            if let Ok(v) = HeaderValue::from_str(&format!("{ms:.3}ms")) {
                res.headers_mut().insert("x-response-time", v);
            }
            res
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tower::{Layer, Service};
    use tracing_subscriber::prelude::*;

    fn counted(r: &Recorder) -> BTreeMap<String, f64> {
        r.take_interval()
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect()
    }

    #[test]
    fn tracing_layer_counts_warnings_errors_criticals() {
        let r = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(TracingLayer::new(r.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not counted");
            tracing::warn!("w1");
            tracing::warn!(x = 1, "w2");
            tracing::error!("e1");
            tracing::error!(critical = true, "c1");
            tracing::error!(critical = false, "e2");
        });
        let v = counted(&r);
        assert_eq!(
            (v["warnings.count"], v["errors.count"], v["criticals.count"]),
            (2.0, 2.0, 1.0)
        );
    }

    #[tokio::test]
    async fn tower_layer_counts_and_sets_the_header() {
        let r = Recorder::default();
        let mut svc = RequestMetricsLayer::new(r.clone()).layer(tower::service_fn(
            |_req: Request<()>| async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok::<_, std::convert::Infallible>(Response::new("hi"))
            },
        ));
        for _ in 0..3 {
            let res = svc.call(Request::new(())).await.unwrap();
            let h = res.headers()["x-response-time"]
                .to_str()
                .unwrap()
                .to_owned();
            let ms: f64 = h.strip_suffix("ms").unwrap().parse().unwrap();
            assert!(ms >= 5.0, "{h}");
        }
        let v = counted(&r);
        assert_eq!(v["requests.count"], 3.0);
        assert!(v["requests.latency_sum"] >= 15.0, "{v:?}");
        assert!(v["requests.latency_avg"] >= 5.0, "{v:?}");
    }
}
