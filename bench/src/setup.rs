//! Accounts and rooms for a load run.

use std::time::Instant;

use anyhow::Context as _;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::cli::Args;
use crate::matrix::{retrying, Http, Session};
use crate::payload::DeviceKeys;

/// Attempts per setup request: enough to get through a server's rate
/// limits, few enough that a broken server fails the run quickly.
const SETUP_ATTEMPTS: u32 = 30;

pub(crate) struct User {
    pub index: u32,
    pub session: Session,
    pub keys: DeviceKeys,
    pub room: usize,
    pub syncs: bool,
}

pub(crate) struct World {
    pub users: Vec<User>,
    pub rooms: Vec<String>,
    /// Users of each room that long-poll /sync.
    pub syncing_members: Vec<Vec<u32>>,
}

/// User i's room: i mod M, so the first K users cover the rooms evenly.
pub(crate) fn room_of(user: u32, rooms: u32) -> usize {
    (user % rooms) as usize
}

/// Registers (or logs in) one user. A name already taken, as on a rerun
/// against the same server, falls back to logging in.
pub(crate) async fn sign_in(http: &Http, args: &Args, user: u32) -> anyhow::Result<Session> {
    let (name, password) = (args.localpart(user), args.password(user));
    if !args.login {
        let token = args.registration_token.as_deref();
        match retrying(SETUP_ATTEMPTS, || http.register(&name, &password, token)).await {
            Ok(session) => return Ok(session),
            Err(f) if f.errcode.as_deref() == Some("M_USER_IN_USE") => {}
            Err(f) => return Err(f).with_context(|| format!("registering {name}")),
        }
    }
    retrying(SETUP_ATTEMPTS, || http.login(&name, &password))
        .await
        .with_context(|| format!("logging in {name}"))
}

pub(crate) async fn build(http: &Http, args: &Args) -> anyhow::Result<World> {
    let started = Instant::now();
    let concurrency = args.setup_concurrency as usize;
    let mut sessions: Vec<(u32, Session)> = stream::iter(0..args.users)
        .map(|i| async move { Ok::<_, anyhow::Error>((i, sign_in(http, args, i).await?)) })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    sessions.sort_by_key(|(i, _)| *i);
    eprintln!(
        "setup: {} users signed in in {:.1} s",
        sessions.len(),
        started.elapsed().as_secs_f64()
    );

    // User r (r < M) is the first member of room r and creates it.
    let rooms: Vec<String> = stream::iter(0..args.rooms)
        .map(|r| {
            let creator = &sessions[r as usize].1;
            let name = format!("cloister-bench room {r}");
            async move {
                retrying(SETUP_ATTEMPTS, || http.create_room(creator, &name))
                    .await
                    .with_context(|| format!("creating room {r}"))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;

    stream::iter(args.rooms..args.users)
        .map(|i| {
            let session = &sessions[i as usize].1;
            let room = &rooms[room_of(i, args.rooms)];
            async move {
                retrying(SETUP_ATTEMPTS, || http.join(session, room))
                    .await
                    .with_context(|| format!("user {i} joining its room"))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "setup: {} rooms created and joined in {:.1} s",
        rooms.len(),
        started.elapsed().as_secs_f64()
    );

    let syncers = args.syncer_count();
    let mut syncing_members = vec![Vec::new(); rooms.len()];
    let users = sessions
        .into_iter()
        .map(|(index, session)| {
            let room = room_of(index, args.rooms);
            let syncs = index < syncers;
            if syncs {
                syncing_members[room].push(index);
            }
            User {
                index,
                keys: DeviceKeys::new(&session.device_id),
                session,
                room,
                syncs,
            }
        })
        .collect();
    Ok(World {
        users,
        rooms,
        syncing_members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_evenly_and_first_users_cover_every_room() {
        let (users, rooms) = (100, 10);
        let mut per_room = vec![0; rooms as usize];
        for u in 0..users {
            per_room[room_of(u, rooms)] += 1;
        }
        assert!(per_room.iter().all(|&n| n == 10));
        let covered: std::collections::HashSet<usize> =
            (0..rooms).map(|u| room_of(u, rooms)).collect();
        assert_eq!(covered.len(), rooms as usize);
    }
}
