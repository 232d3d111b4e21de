//! The inventory pager, a pure state machine in the style of `crate::pager`: Duo's
//! `limit`/`offset` paging (duo_client_python `json_paging_api_call`), followed while the page
//! carries `metadata.next_offset`. The end is never inferred from a short page; an offset that
//! does not move forward is an error, not a loop.

use super::page::{Entity, InventoryPage};
use super::InventoryKind;

/// One request: the query parameters to send (without `account_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRequest {
    /// `None` for the summary (not paged).
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl OffsetRequest {
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if let Some(limit) = self.limit {
            p.push(("limit".to_string(), limit.to_string()));
        }
        if let Some(offset) = self.offset {
            p.push(("offset".to_string(), offset.to_string()));
        }
        p
    }
}

/// What a page gives: its entities, and whether the snapshot goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct PageStep {
    pub entities: Vec<Entity>,
    /// True once Duo said there is no more: the snapshot is complete.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagerError {
    #[error("{kind}: Duo's next_offset {got} does not move past the offset {sent} just asked for")]
    OffsetNotForward {
        kind: InventoryKind,
        sent: u64,
        got: u64,
    },
    #[error("{kind}: a page arrived after the snapshot was complete")]
    AfterComplete { kind: InventoryKind },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetPager {
    kind: InventoryKind,
    limit: Option<u32>,
    offset: u64,
    complete: bool,
    pages: u64,
    entities: u64,
}

impl OffsetPager {
    /// A snapshot of `kind` from the first entity, at Duo's page limit for the kind.
    pub fn new(kind: InventoryKind) -> OffsetPager {
        OffsetPager {
            kind,
            limit: kind.page_limit(),
            offset: 0,
            complete: false,
            pages: 0,
            entities: 0,
        }
    }

    pub fn kind(&self) -> InventoryKind {
        self.kind
    }

    /// The next request, or `None` when the snapshot is complete.
    pub fn next(&self) -> Option<OffsetRequest> {
        if self.complete {
            return None;
        }
        Some(OffsetRequest {
            limit: self.limit,
            offset: self.limit.map(|_| self.offset),
        })
    }

    /// Takes the page that answered [`next`](Self::next).
    pub fn on_page(&mut self, page: InventoryPage) -> Result<PageStep, PagerError> {
        if self.complete {
            return Err(PagerError::AfterComplete { kind: self.kind });
        }
        let more = match (self.limit, page.next_offset) {
            (Some(_), Some(got)) if got <= self.offset => {
                return Err(PagerError::OffsetNotForward {
                    kind: self.kind,
                    sent: self.offset,
                    got,
                })
            }
            (Some(_), Some(got)) => {
                self.offset = got;
                true
            }
            _ => false,
        };
        self.complete = !more;
        self.pages += 1;
        self.entities += page.entities.len() as u64;
        Ok(PageStep {
            entities: page.entities,
            complete: self.complete,
        })
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Pages and entities taken so far.
    pub fn progress(&self) -> (u64, u64) {
        (self.pages, self.entities)
    }
}
