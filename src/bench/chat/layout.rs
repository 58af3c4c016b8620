//! Who is in which room: a deterministic function of a few numbers, so that
//! the coordinator (which creates the rooms) and every worker process (whose
//! users must know their rooms) agree without shipping member lists.
//!
//! Rooms `0..big_rooms` are big: big room `b` holds users
//! `b * big_room_size .. (b + 1) * big_room_size`, so no user is in two big
//! rooms. The other rooms are small: the users' remaining memberships are
//! dealt out round robin over them in user order (user `u` takes the next
//! ones after those of users `0..u`), so one user's are distinct and the
//! small rooms' member counts differ by at most one.
//! Every user is in exactly `per_user` rooms ([`Layout::check`]).

use crate::bench::error::BenchError;
use crate::bench::poll::api::mint_token;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The rooms of a run and their members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// Number of users (`0..users`).
    pub users: usize,
    /// Number of rooms, big ones included.
    pub rooms: usize,
    /// Rooms each user is a member of.
    pub per_user: usize,
    /// How many of the rooms are big.
    pub big_rooms: usize,
    /// Members of each big room.
    pub big_room_size: usize,
}

impl Layout {
    /// Why the numbers cannot make a layout, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.users == 0 || self.rooms == 0 || self.per_user == 0 {
            return Err("users, rooms and rooms per user must be at least 1".into());
        }
        if self.big_rooms > self.rooms {
            return Err("there cannot be more big rooms than rooms".into());
        }
        if self.big_rooms > 0 && self.big_room_size == 0 {
            return Err("a big room needs at least 1 member".into());
        }
        if self.big_rooms.saturating_mul(self.big_room_size) > self.users {
            return Err("the big rooms need more users than there are (no user is in two)".into());
        }
        let small = self.rooms - self.big_rooms;
        let everyone_big = self.big_rooms * self.big_room_size == self.users;
        let needed = self.per_user - usize::from(everyone_big);
        if needed > small {
            return Err(format!(
                "{} rooms per user need at least {needed} small rooms besides the big ones",
                self.per_user
            ));
        }
        Ok(())
    }

    /// Number of small rooms.
    fn small(&self) -> usize {
        self.rooms - self.big_rooms
    }

    /// The big room of `user`, if it is in one.
    fn big_room_of(&self, user: usize) -> Option<usize> {
        (user < self.big_rooms * self.big_room_size).then(|| user / self.big_room_size)
    }

    /// Small memberships of the users before `user` (each in a big room has one fewer).
    fn small_before(&self, user: usize) -> usize {
        user * self.per_user - user.min(self.big_rooms * self.big_room_size)
    }

    /// The rooms of `user`, ascending.
    pub fn rooms_of(&self, user: usize) -> Vec<u32> {
        let big = self.big_room_of(user);
        let small_count = self.per_user - usize::from(big.is_some());
        let mut rooms: Vec<u32> = big
            .into_iter()
            .chain(
                (0..small_count)
                    .map(|k| self.big_rooms + (self.small_before(user) + k) % self.small().max(1)),
            )
            .map(|room| room as u32)
            .collect();
        rooms.sort_unstable();
        rooms
    }

    /// The members of every room, by room index.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.rooms];
        for user in 0..self.users {
            for room in self.rooms_of(user) {
                members[room as usize].push(user);
            }
        }
        members
    }

    /// Memberships over all rooms.
    pub fn memberships(&self) -> usize {
        self.users * self.per_user
    }
}

/// The chat users of a subscriber group: how to name them, sign their
/// tokens and find their rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatUsers {
    /// HS256 secret of the realm the tokens are signed for.
    pub secret: String,
    /// User `i`'s JWT subject is this prefix followed by `i`.
    pub subject_prefix: String,
    /// The rooms and members.
    pub layout: Layout,
    /// How long tokens stay valid, in seconds.
    pub token_seconds: u64,
}

impl ChatUsers {
    /// The JWT subject of user `index`.
    pub fn subject(&self, index: usize) -> String {
        subject(&self.subject_prefix, index)
    }

    /// A token for user `index`.
    pub fn token(&self, index: usize) -> Result<String, BenchError> {
        mint_token(
            &self.secret,
            &self.subject(index),
            Duration::from_secs(self.token_seconds),
        )
    }
}

/// The JWT subject of user `index` under `prefix`.
pub fn subject(prefix: &str, index: usize) -> String {
    format!("{prefix}{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(users: usize, rooms: usize, per_user: usize, big: usize, size: usize) -> Layout {
        Layout {
            users,
            rooms,
            per_user,
            big_rooms: big,
            big_room_size: size,
        }
    }

    #[test]
    fn the_issue_shape_gives_every_user_its_rooms() {
        let shape = layout(10_000, 2_000, 10, 5, 1_000);
        assert_eq!(shape.check(), Ok(()));
        let members = shape.members();
        assert!(members[..5].iter().all(|room| room.len() == 1_000));
        let small: Vec<usize> = members[5..].iter().map(Vec::len).collect();
        assert!(
            small.iter().all(|count| (47..=48).contains(count)),
            "{small:?}"
        );
        assert_eq!(members.iter().map(Vec::len).sum::<usize>(), 100_000);
        for user in [0, 999, 1_000, 4_999, 5_000, 9_999] {
            let rooms = shape.rooms_of(user);
            assert_eq!(rooms.len(), 10);
            assert!(rooms.windows(2).all(|pair| pair[0] < pair[1]), "distinct");
            assert_eq!(
                rooms.iter().filter(|room| **room < 5).count(),
                usize::from(user < 5_000)
            );
        }
    }

    #[test]
    fn one_big_room_holds_everyone() {
        let shape = layout(5_000, 1, 1, 1, 5_000);
        assert_eq!(shape.check(), Ok(()));
        assert_eq!(shape.rooms_of(4_321), vec![0]);
        assert_eq!(shape.members()[0].len(), 5_000);
    }

    #[test]
    fn impossible_shapes_are_refused() {
        assert!(layout(10, 5, 6, 0, 0).check().is_err(), "too few rooms");
        assert!(layout(10, 5, 1, 2, 6).check().is_err(), "big rooms too big");
        assert!(
            layout(10, 2, 1, 3, 1).check().is_err(),
            "more big rooms than rooms"
        );
        assert!(layout(0, 2, 1, 0, 0).check().is_err());
        assert!(
            layout(10, 1, 2, 1, 10).check().is_err(),
            "no small room left"
        );
    }
}
