// Interop check: the real automerge-repo JS client (2.5.x) against the Lianxin
// sync server. Driven by a Rust test that reads stdout line by line.
//
// env:
//   LIANXIN_URL                 e.g. ws://127.0.0.1:PORT/v1/sync   (required)
//   LIANXIN_TOKEN               JWT, sent as ?token=...             (required)
//   LIANXIN_INTEROP_TIMEOUT_MS  overall timeout, default 30000
//
// stdout protocol (nothing else is written to stdout; diagnostics go to stderr):
//   DOC <automerge url>   once the server has acknowledged the document's heads
//   SAW <value>           when the document got a string key `fromRust`; exit 0
//   ERR <message>         on any error or timeout; exit 1

import { Repo, cbor, encodeHeads } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const PROTOCOL_V1 = "1"

let finished = false
let repo
let adapter

function log(...args) {
  process.stderr.write(`[interop.mjs] ${args.join(" ")}\n`)
}

function writeLine(line) {
  return new Promise(resolve => {
    process.stdout.write(line.replace(/[\r\n]+/g, " ") + "\n", () => resolve())
  })
}

async function shutdownAndExit(code) {
  // Close the repo (disconnects the adapter, which clears its retry timer and
  // closes the socket) but never let a hanging shutdown keep us alive.
  try {
    if (repo) {
      await Promise.race([
        repo.shutdown(),
        new Promise(resolve => setTimeout(resolve, 2000).unref()),
      ])
    } else if (adapter?.socket) {
      adapter.disconnect()
    }
  } catch (e) {
    log("error during shutdown:", e?.stack ?? e)
  }
  process.exit(code)
}

async function fail(message) {
  if (finished) return
  finished = true
  await writeLine(`ERR ${message}`)
  await shutdownAndExit(1)
}

async function succeed(value) {
  if (finished) return
  finished = true
  await writeLine(`SAW ${value}`)
  await shutdownAndExit(0)
}

process.on("uncaughtException", err => {
  // The adapter rethrows websocket errors other than ECONNREFUSED from its
  // error listener (e.g. "Unexpected server response: 401" when the upgrade
  // is refused), which surfaces here.
  void fail(`uncaught exception: ${err?.message ?? err}`)
})
process.on("unhandledRejection", err => {
  void fail(`unhandled rejection: ${err?.message ?? err}`)
})

/**
 * The stock adapter ignores `error` messages (it only logs them with `debug`)
 * and does not check the `peer` reply. This subclass adds those checks so a
 * broken server handshake is reported instead of silently timing out.
 */
class CheckingWebSocketClientAdapter extends WebSocketClientAdapter {
  connect(peerId, peerMetadata) {
    super.connect(peerId, peerMetadata)
    const socket = this.socket
    socket.addEventListener("close", event => {
      if (finished) return
      const { code, reason } = event
      log(`websocket closed: code=${code} reason=${JSON.stringify(String(reason ?? ""))}`)
      // 1008 = policy violation, 4000-4999 = application codes (e.g. auth).
      if (code === 1008 || (code >= 4000 && code <= 4999)) {
        void fail(`server closed the websocket: code=${code} reason=${reason}`)
      }
    })
  }

  receiveMessage(messageBytes) {
    let message
    try {
      message = cbor.decode(new Uint8Array(messageBytes))
    } catch (e) {
      void fail(`could not decode a message from the server as CBOR: ${e?.message ?? e}`)
      return
    }
    if (message?.type === "error") {
      void fail(`server sent error message: ${message.message}`)
      return
    }
    if (message?.type === "peer") {
      if (message.targetId !== this.peerId) {
        void fail(
          `peer message targetId ${JSON.stringify(message.targetId)} != our peerId ${JSON.stringify(this.peerId)}`
        )
        return
      }
      if (message.selectedProtocolVersion !== PROTOCOL_V1) {
        void fail(
          `peer message selectedProtocolVersion ${JSON.stringify(message.selectedProtocolVersion)} != "1"`
        )
        return
      }
      if (typeof message.senderId !== "string" || message.senderId.length === 0) {
        void fail("peer message has no senderId")
        return
      }
      log(`joined: server peerId=${message.senderId}`)
    }
    super.receiveMessage(messageBytes)
  }
}

async function main() {
  const url = process.env.LIANXIN_URL
  const token = process.env.LIANXIN_TOKEN
  const timeoutMs = Number(process.env.LIANXIN_INTEROP_TIMEOUT_MS ?? "30000")
  if (!url) throw new Error("LIANXIN_URL is not set")
  if (!token) throw new Error("LIANXIN_TOKEN is not set")
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`bad LIANXIN_INTEROP_TIMEOUT_MS: ${process.env.LIANXIN_INTEROP_TIMEOUT_MS}`)
  }

  let phase = "waiting for the server to acknowledge the document"
  setTimeout(() => void fail(`timeout after ${timeoutMs} ms (${phase})`), timeoutMs).unref()
  // Keep the event loop alive until we finish (the timer above is unref'd so
  // that it never delays a normal exit).
  const keepAlive = setInterval(() => {}, 1 << 30)

  const sep = url.includes("?") ? "&" : "?"
  adapter = new CheckingWebSocketClientAdapter(`${url}${sep}token=${encodeURIComponent(token)}`)

  repo = new Repo({
    network: [adapter],
    peerId: `lianxin-interop-js-${Math.random().toString(36).slice(2, 10)}`,
    isEphemeral: true,
  })

  const handle = repo.create({ title: "from-js", items: ["a", "b"] })
  const ourHeads = handle.heads()

  // Print DOC only once the server has all our changes (its sync state for us
  // reports heads that include ours), so the Rust side can find the document.
  await new Promise(resolve => {
    const onSyncState = ({ documentId, syncState, peerId }) => {
      if (documentId !== handle.documentId || !syncState.theirHeads) return
      const theirs = new Set(encodeHeads(syncState.theirHeads))
      if (ourHeads.every(h => theirs.has(h))) {
        log(`server ${peerId} has our heads`)
        repo.synchronizer.off("sync-state", onSyncState)
        resolve()
      }
    }
    repo.synchronizer.on("sync-state", onSyncState)
  })
  if (finished) return

  phase = "waiting for the key fromRust"
  const check = () => {
    if (finished) return
    const doc = handle.doc()
    // A Rust client that puts a plain scalar string shows up in automerge-js as an
    // ImmutableString (its text is in `.val`); a JS-written string is a text object.
    const raw = doc?.fromRust
    const value = typeof raw?.val === "string" ? raw.val : raw
    if (typeof value === "string") {
      clearInterval(keepAlive)
      void succeed(value)
    } else if (value !== undefined) {
      void fail(`fromRust is not a string: ${JSON.stringify(value)}`)
    }
  }
  handle.on("change", check)
  await writeLine(`DOC ${handle.url}`)
  check()
}

main().catch(err => void fail(err?.message ?? String(err)))
