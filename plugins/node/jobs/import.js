'use strict';
// The Node reference job: incident 001's import of players and games (ten participants a
// game) into SQLite through better-sqlite3, in pages of --batch records fetched from a
// source that answers each page after --latency ms (a remote API).
//
//   node jobs/import.js --batch 50 [--records 10000] [--variant accumulate|stream]
//                       [--latency 2] [--db PATH]
//
// --variant accumulate (the bad one, as the incident shipped): every page is fetched into
//   one array before anything is written (`fetched`, kept for an import report), then one
//   transaction inserts it all. V8's heap grows with --records: it dies at a small heap
//   limit ("JavaScript heap out of memory") whatever the batch size.
// --variant stream (the fix): each page is written in its own transaction as it arrives and
//   nothing of it stays reachable; the heap holds one page, so its peak follows --batch.
//
// A larger batch means fewer round trips (faster) and a larger page in memory. The records
// written so far are reported to memdiag (MEMDIAG_PROBE, when set) for records/s.
const fs = require('fs');
const os = require('os');
const path = require('path');
const Database = require('better-sqlite3');

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const batch = Number(option('batch', 50));
const records = Number(option('records', 10000));
const variant = option('variant', 'accumulate');
const latencyMs = Number(option('latency', 2));
if (!(batch > 0) || !(records > 0) || !['accumulate', 'stream'].includes(variant)) {
  console.error('usage: node jobs/import.js --batch N [--records N] [--variant accumulate|stream]');
  process.exit(2);
}
const dbPath = option('db', path.join(os.tmpdir(), `memdiag-node-import-${process.pid}.db`));

function progress(done) {
  const probe = process.env.MEMDIAG_PROBE;
  if (probe) fs.appendFileSync(probe, JSON.stringify({ t: Date.now() / 1000, records: done }) + '\n');
}

// One page of the source: `count` records from `offset`, every other one a game with ten
// participants, parsed from the JSON text the API answers with.
async function fetchPage(offset, count) {
  await new Promise((resolve) => setTimeout(resolve, latencyMs));
  const page = [];
  for (let i = offset; i < offset + count && i < records; i++) {
    if (i % 2 === 0) {
      const history = Array.from({ length: 40 }, (_, k) => (i + k * 17) % records);
      page.push({ kind: 'player', id: i, nickname: `player-${i}`, bio: `bio of ${i} `.repeat(1200), history });
    } else {
      const participants = [];
      for (let seat = 0; seat < 10; seat++) {
        participants.push({ player: (i * 7 + seat * 13) % records, seat, role: seat % 3 ? 'civilian' : 'mafia', score: (i + seat) % 5, comment: `seat ${seat} of game ${i}`, votes: [seat, (seat + 3) % 10, (seat + 7) % 10] });
      }
      const moves = Array.from({ length: 20 }, (_, k) => ({ t: k * 30, seat: k % 10, action: k % 4 ? 'vote' : 'speech', note: `move ${k} of game ${i}: `.padEnd(600, '.') }));
      page.push({ kind: 'game', id: i, played_at: new Date(1700000000000 + i * 60000).toISOString(), participants, moves });
    }
  }
  return JSON.parse(JSON.stringify(page));
}

function openDatabase() {
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec(`
    DROP TABLE IF EXISTS game_participants; DROP TABLE IF EXISTS games; DROP TABLE IF EXISTS players;
    CREATE TABLE players (id INTEGER PRIMARY KEY, nickname TEXT NOT NULL, bio TEXT);
    CREATE TABLE games (id INTEGER PRIMARY KEY, played_at TEXT NOT NULL);
    CREATE TABLE game_participants (game_id INTEGER NOT NULL, player_id INTEGER NOT NULL,
      seat INTEGER NOT NULL, role TEXT NOT NULL, score INTEGER NOT NULL);`);
  return db;
}

function writer(db) {
  const player = db.prepare('INSERT INTO players (id, nickname, bio) VALUES (?, ?, ?)');
  const game = db.prepare('INSERT INTO games (id, played_at) VALUES (?, ?)');
  const seat = db.prepare(
    'INSERT INTO game_participants (game_id, player_id, seat, role, score) VALUES (?, ?, ?, ?, ?)'
  );
  return db.transaction((rows) => {
    for (const row of rows) {
      if (row.kind === 'player') {
        player.run(row.id, row.nickname, row.bio);
      } else {
        game.run(row.id, row.played_at);
        for (const p of row.participants) seat.run(row.id, p.player, p.seat, p.role, p.score);
      }
    }
  });
}

async function main() {
  const db = openDatabase();
  const write = writer(db);
  let written = 0;
  if (variant === 'accumulate') {
    const fetched = [];
    for (let offset = 0; offset < records; offset += batch) {
      fetched.push(...(await fetchPage(offset, batch)));
    }
    write(fetched);
    written = fetched.length;
    progress(written);
  } else {
    for (let offset = 0; offset < records; offset += batch) {
      const page = await fetchPage(offset, batch);
      write(page);
      written += page.length;
      progress(written);
    }
  }
  const count = db.prepare('SELECT COUNT(*) AS n FROM game_participants').get().n;
  db.close();
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(dbPath + suffix, { force: true });
  console.log(`imported ${written} records (${variant}, batch ${batch}): ${count} participants`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
