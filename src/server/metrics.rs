//! Prometheus metrics for `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub queue_depth: IntGauge,
    pub prompt_tokens: IntCounter,
    pub completion_tokens: IntCounter,
    pub decode_tok_s: Histogram,
    pub prefill_tok_s: Histogram,
    pub time_to_first_token: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("zhengwu".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Request latency by route")
                .buckets(vec![0.005, 0.02, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            &["route"],
        )
        .expect("metric");
        let queue_depth = IntGauge::new("llm_queue_depth", "Generation requests waiting or running").expect("metric");
        let prompt_tokens = IntCounter::new("llm_prompt_tokens_total", "Prompt tokens processed").expect("metric");
        let completion_tokens = IntCounter::new("llm_completion_tokens_total", "Tokens generated").expect("metric");
        let tok_buckets = vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let decode_tok_s = Histogram::with_opts(
            HistogramOpts::new("llm_decode_tokens_per_second", "Decode speed per request").buckets(tok_buckets.clone()),
        )
        .expect("metric");
        let prefill_tok_s = Histogram::with_opts(
            HistogramOpts::new("llm_prefill_tokens_per_second", "Prefill speed per request").buckets(tok_buckets),
        )
        .expect("metric");
        let time_to_first_token = Histogram::with_opts(
            HistogramOpts::new("llm_time_to_first_token_seconds", "Queue + prefill time per request")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(queue_depth.clone()),
            Box::new(prompt_tokens.clone()),
            Box::new(completion_tokens.clone()),
            Box::new(decode_tok_s.clone()),
            Box::new(prefill_tok_s.clone()),
            Box::new(time_to_first_token.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            latency,
            queue_depth,
            prompt_tokens,
            completion_tokens,
            decode_tok_s,
            prefill_tok_s,
            time_to_first_token,
        }
    }

    pub fn record_completion(&self, c: &zhengwu_inference::Completion) {
        self.prompt_tokens.inc_by(c.prompt_tokens as u64);
        self.completion_tokens.inc_by(c.completion_tokens as u64);
        if c.prefill_secs > 0.0 {
            self.prefill_tok_s.observe(c.prompt_tokens as f64 / c.prefill_secs);
        }
        if c.decode_secs > 0.0 && c.completion_tokens > 1 {
            self.decode_tok_s.observe((c.completion_tokens - 1) as f64 / c.decode_secs);
        }
        self.time_to_first_token.observe(c.queue_secs + c.prefill_secs);
    }

    /// Add collectors owned by another part of the product (hotline metrics).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
