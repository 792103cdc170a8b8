//! Checks every read makes before it reaches storage, shared by the roots
//! and by nested listings (`City.activities`): the read policy (which
//! gives the reader's [`ReadScope`]), slug arguments and page sizes.

use async_graphql::{Context, Result};
use cityhub_domain::Action;
use cityhub_storage::ReadScope;

use crate::error::{bad_input, denied};
use crate::state::{actor, hub};

/// Refuses reads when anonymous reading is off and there is no token;
/// otherwise the scope the reader sees activities with.
pub fn may_read(ctx: &Context<'_>) -> Result<ReadScope> {
    let h = hub(ctx);
    let actor = actor(ctx);
    h.service
        .policy()
        .authorize(actor, Action::ReadNetwork, None)
        .map_err(denied)?;
    Ok(ReadScope::for_actor(actor))
}

/// Checks a slug argument's characters and length (`BAD_USER_INPUT`
/// naming `field`); a well-formed text that is no slug simply finds nothing.
pub fn check_slug_arg(ctx: &Context<'_>, field: &str, slug: &str) -> Result<()> {
    let max = hub(ctx).service.limits().slug_chars;
    cityhub_domain::chars::check_line(field, slug, max).map_err(crate::error::domain)
}

/// A listing's `first`, checked against the configured maximum.
pub fn page_size(ctx: &Context<'_>, first: i32) -> Result<u64> {
    let max = hub(ctx).settings.max_page_size;
    match u64::try_from(first) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(bad_input("first", format!("must be between 0 and {max}"))),
    }
}
