//! The running device app: a poll loop that fetches requests from the service, and the citizen's
//! decisions (from the web UI or the CLI) turned into signed answers.
//!
//! One request is shown at a time. Token work (PKCS#11) runs on blocking threads.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use esigd_scd::device::{Transaction, TransactionResult};
use rand_core::OsRng;
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::agent::{Agent, AgentError, Review};
use crate::client::{Client, ClientError};

/// A request waiting for the citizen.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The transaction as fetched.
    pub tx: Transaction,
    /// What to show.
    pub review: Review,
    /// A message from the last attempt (e.g. wrong PIN).
    pub message: Option<String>,
}

/// The citizen's decision on the request `transaction_id`.
#[derive(Debug)]
pub enum Decision {
    /// Confirm with the PIN (typed twice when choosing one) and, for the three-code choice, the
    /// code picked.
    Confirm {
        /// The PIN.
        pin: SecretString,
        /// The PIN again, when choosing one.
        pin_again: Option<SecretString>,
        /// The code picked, for the three-code choice.
        choice: Option<String>,
    },
    /// Refuse.
    Refuse,
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer was sent; the outcome's wire name (`OK`, `USER_REFUSED_INTERACTION`, …).
    Sent(String),
    /// The request is still waiting (e.g. wrong PIN); the message says why.
    Again(String),
    /// There is no such request any more.
    Gone,
}

/// The app.
pub struct App {
    agent: Mutex<Agent>,
    client: Client,
    current: Mutex<Option<Pending>>,
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    /// Wraps an agent and a client; registers the device with the service if it has no ID yet.
    pub async fn start(
        agent: Agent,
        client: Client,
        version: &str,
    ) -> Result<Arc<App>, ClientError> {
        let mut agent = agent;
        if agent.device_id().is_none() {
            let id = client.register(&agent.registration(version)).await?;
            agent.set_device_id(&id)?;
        }
        Ok(Arc::new(App {
            agent: Mutex::new(agent),
            client,
            current: Mutex::new(None),
            changed: Notify::new(),
        }))
    }

    /// The device ID (the `SCDRemoteId` to enter on the onboarding page).
    pub fn device_id(&self) -> String {
        lock(&self.agent).device_id().unwrap_or_default().to_owned()
    }

    /// The request on screen.
    pub fn current(&self) -> Option<Pending> {
        lock(&self.current).clone()
    }

    /// Waits until the request on screen changes (or `wait` passes).
    pub async fn wait_change(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.changed.notified()).await;
    }

    /// Polls the service for ever: shows each new request, fetches issued certificates.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.poll_once().await {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %e, "polling the Remote SCD service failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn poll_once(self: &Arc<Self>) -> Result<(), ClientError> {
        self.fetch_certificates().await?;
        if lock(&self.current).is_some() {
            // Wait for the citizen; drop the request once it has expired.
            self.wait_change(Duration::from_secs(1)).await;
            let mut cur = lock(&self.current);
            if let Some(p) = cur.as_ref()
                && humantime::parse_rfc3339(&p.tx.expires_at).is_ok_and(|t| t <= SystemTime::now())
            {
                tracing::info!(transaction = %p.tx.transaction_id, "request expired on screen");
                *cur = None;
                drop(cur);
                self.changed.notify_waiters();
            }
            return Ok(());
        }
        let id = self.device_id();
        let list = self
            .client
            .pending(&self.signer(), &id, Duration::from_secs(25))
            .await?;
        for r in list.transactions {
            let tx = self
                .client
                .transaction(&self.signer(), &r.transaction_id)
                .await?;
            let review = lock(&self.agent).review(&tx, SystemTime::now(), &mut OsRng);
            match review {
                Ok(review) => {
                    tracing::info!(transaction = %tx.transaction_id, kind = ?tx.kind, "request shown");
                    *lock(&self.current) = Some(Pending {
                        tx,
                        review,
                        message: None,
                    });
                    self.changed.notify_waiters();
                    break;
                }
                Err(e) => {
                    tracing::info!(transaction = %tx.transaction_id, reason = %e, "request not shown");
                }
            }
        }
        Ok(())
    }

    /// Signs call tokens with the agent, taking its lock only while signing (never across an
    /// HTTP call).
    fn signer(&self) -> impl Fn(&str, &str) -> Result<String, AgentError> + Send + Sync + '_ {
        move |method: &str, url: &str| {
            lock(&self.agent).call_token(method, url, SystemTime::now(), &mut OsRng)
        }
    }

    async fn fetch_certificates(&self) -> Result<(), ClientError> {
        let handles = lock(&self.agent).keys_without_certificate();
        for h in handles {
            let cert = self.client.certificate(&self.signer(), &h).await?;
            if let Some(der) = cert {
                lock(&self.agent).store_certificate(&h, &der)?;
                tracing::info!(key = %h, "certificate stored on the token");
            }
        }
        Ok(())
    }

    /// Applies the citizen's decision on `transaction_id`.
    pub async fn decide(
        self: &Arc<Self>,
        transaction_id: &str,
        decision: Decision,
    ) -> Result<Outcome, ClientError> {
        let Some(p) = self
            .current()
            .filter(|p| p.tx.transaction_id == transaction_id)
        else {
            return Ok(Outcome::Gone);
        };
        let app = self.clone();
        let tx = p.tx.clone();
        let review = p.review.clone();
        let result =
            tokio::task::spawn_blocking(move || -> Result<TransactionResult, AgentError> {
                let mut agent = lock(&app.agent);
                let now = SystemTime::now();
                match decision {
                    Decision::Refuse => agent.refuse(&tx, &review, now),
                    Decision::Confirm {
                        pin,
                        pin_again,
                        choice,
                    } => {
                        if review.choices.is_some() && choice.as_deref() != Some(review.vc.as_str())
                        {
                            return agent.wrong_code(&tx, &review, now);
                        }
                        agent.approve(&tx, &review, &pin, pin_again.as_ref(), now)
                    }
                }
            })
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let result = match result {
            Ok(r) => r,
            Err(e @ (AgentError::WrongPin { .. } | AgentError::PinRule(_))) => {
                let msg = e.to_string();
                if let Some(cur) = lock(&self.current).as_mut() {
                    cur.message = Some(msg.clone());
                }
                self.changed.notify_waiters();
                return Ok(Outcome::Again(msg));
            }
            Err(e) => return Err(e.into()),
        };
        // The wire name (`OK`, `USER_REFUSED_INTERACTION`, `DOCUMENT_UNUSABLE`, …).
        let outcome = serde_json::to_value(result.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", result.outcome));
        let handle = self
            .client
            .result(&self.signer(), transaction_id, &result)
            .await?;
        if let Some(h) = handle {
            lock(&self.agent).set_key_handle(transaction_id, &h)?;
        }
        *lock(&self.current) = None;
        self.changed.notify_waiters();
        tracing::info!(transaction = %transaction_id, outcome = %outcome, "answer sent");
        Ok(Outcome::Sent(outcome))
    }
}
