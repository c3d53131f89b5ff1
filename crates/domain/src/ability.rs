//! Roles of users and abilities of API tokens.
//!
//! A request acts with the intersection of its token's abilities and its
//! user's role (CONTRACT §2), so a token never outgrows the user behind it.

use crate::string_enum;

string_enum!(
    /// A user's role in their organization.
    Role {
        Admin => "admin",
        Agent => "agent",
    }
);

string_enum!(
    /// What a token (or a role) allows.
    Ability {
        All => "*",
        CreateTicket => "create-ticket",
        TicketsRead => "tickets:read",
        TicketsWrite => "tickets:write",
        ContactsRead => "contacts:read",
        ContactsWrite => "contacts:write",
        WebhooksManage => "webhooks:manage",
        InterventionsManage => "interventions:manage",
        Admin => "admin",
    }
);

impl Role {
    /// The abilities this role grants.
    pub fn abilities(self) -> &'static [Ability] {
        match self {
            Role::Admin => Ability::ALL,
            Role::Agent => &[
                Ability::CreateTicket,
                Ability::TicketsRead,
                Ability::TicketsWrite,
                Ability::ContactsRead,
                Ability::ContactsWrite,
            ],
        }
    }
}

impl Ability {
    /// Whether holding `self` grants `wanted`. `*` grants everything;
    /// `tickets:write` also grants `create-ticket`.
    pub fn grants(self, wanted: Ability) -> bool {
        self == Ability::All
            || self == wanted
            || (self == Ability::TicketsWrite && wanted == Ability::CreateTicket)
    }
}

/// The abilities a request may use: those of the token (all, for a session)
/// that the user's role also grants.
pub fn effective_abilities(role: Role, token: Option<&[Ability]>) -> Vec<Ability> {
    let concrete = Ability::ALL.iter().copied().filter(|a| *a != Ability::All);
    concrete
        .filter(|wanted| role.abilities().iter().any(|r| r.grants(*wanted)))
        .filter(|wanted| token.is_none_or(|t| t.iter().any(|a| a.grants(*wanted))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_cannot_outgrow_its_user() {
        let got = effective_abilities(Role::Agent, Some(&[Ability::All]));
        assert!(!got.contains(&Ability::WebhooksManage));
        assert!(got.contains(&Ability::TicketsWrite));
    }

    #[test]
    fn a_token_narrows_an_admin() {
        let got = effective_abilities(Role::Admin, Some(&[Ability::TicketsRead]));
        assert_eq!(got, vec![Ability::TicketsRead]);
    }

    #[test]
    fn tickets_write_allows_creating_tickets() {
        let got = effective_abilities(Role::Agent, Some(&[Ability::TicketsWrite]));
        assert!(got.contains(&Ability::CreateTicket));
    }
}
