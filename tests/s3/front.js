// A front for the test S3 server (s3rver), on 127.0.0.1 only:
//  - verifies every request's SigV4 signature with the independent aws4
//    package and rejects (403 SignatureDoesNotMatch) any it cannot reproduce,
//    and checks x-amz-content-sha256 against the body;
//  - gives PUT the conditional-create semantics of AWS S3 (If-None-Match: *)
//    and GCS (x-goog-if-generation-match: 0), which s3rver 3.7.1 lacks: 412
//    PreconditionFailed when the key exists. Writes to one key are queued so
//    that the existence check and the PUT are one step, as on those stores;
//  - injects faults on request: 500, 503 SlowDown, connection reset mid-body,
//    slow replies, truncated replies, 200-with-<Error> on multipart completion.
// Control: POST /__front/fault {"mode", "match" (a regular expression over
// "METHOD /path?query"), "count", "every"}; GET
// /__front/stats; POST /__front/credentials registers temporary credentials;
// POST /__front/bearer registers an OAuth access token (GCS's JSON/XML APIs
// take "Authorization: Bearer"), refused once expired.
// Usage: node front.js <listen port> <upstream port>
'use strict'
const http = require('http')
const crypto = require('crypto')
const aws4 = require('aws4')

const listenPort = Number(process.argv[2])
const upstreamPort = Number(process.argv[3])
const accessKeyId = process.env.FRONT_ACCESS_KEY || 'S3RVER'
const secretAccessKey = process.env.FRONT_SECRET_KEY || 'S3RVER'

const stats = { requests: 0, verified: 0, rejected: 0, injected: 0, preconditionFailed: 0, temporaryVerified: 0, regionRedirects: 0, bearerVerified: 0 }
// Temporary credentials a test's fake credential endpoint issued: access
// key -> {secretAccessKey, sessionToken, expiresAt (Unix seconds)}. A request
// signed with them after expiresAt, or without their session token, is refused.
const temporary = new Map()
// Access tokens a test's fake token endpoint or metadata server issued:
// token -> expiresAt (Unix seconds).
const bearerTokens = new Map()
// When set, the bucket "lives" in this region: a request signed for another
// is answered 301 PermanentRedirect with x-amz-bucket-region, as S3 does.
let bucketRegion = null
let fault = null // {mode, match, count, every, seen}

function xmlError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/xml' })
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`)
}

function verifyBearer(req, body) {
  const token = req.headers.authorization.slice('Bearer '.length)
  const expiresAt = bearerTokens.get(token)
  if (expiresAt === undefined) return 'unknown bearer token'
  if (Date.now() / 1000 > expiresAt) return 'expired bearer token'
  const claimed = req.headers['x-amz-content-sha256']
  if (claimed !== undefined && claimed !== crypto.createHash('sha256').update(body).digest('hex')) return 'x-amz-content-sha256 does not match the body'
  return null
}

// s3rver knows one access key: a request the front accepted under other
// credentials (temporary keys, a bearer token) is signed again with it.
function signForUpstream(req) {
  const headers = Object.assign({}, req.headers)
  delete headers.authorization
  delete headers['x-amz-security-token']
  const opts = { host: req.headers.host, method: req.method, path: req.url, service: 's3', region: 'us-east-1', headers }
  aws4.sign(opts, { accessKeyId, secretAccessKey })
  for (const [name, value] of Object.entries(opts.headers)) req.headers[name.toLowerCase()] = value
  delete req.headers['x-amz-security-token']
}

function verify(req, body) {
  const auth = req.headers.authorization || ''
  if (auth.startsWith('Bearer ')) return verifyBearer(req, body)
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth)
  if (!m) return 'malformed or missing Authorization header'
  const [, key, , region, service, signedHeaders, signature] = m
  let secret = secretAccessKey
  if (key !== accessKeyId) {
    const issued = temporary.get(key)
    if (!issued) return 'unknown access key'
    if (Date.now() / 1000 > issued.expiresAt) return 'expired credentials'
    if (req.headers['x-amz-security-token'] !== issued.sessionToken) return 'session token missing or wrong'
    secret = issued.secretAccessKey
  }
  const claimed = req.headers['x-amz-content-sha256']
  if (claimed !== crypto.createHash('sha256').update(body).digest('hex')) return 'x-amz-content-sha256 does not match the body'
  const headers = {}
  for (const name of signedHeaders.split(';')) {
    if (req.headers[name] === undefined) return `signed header ${name} is missing`
    headers[name] = req.headers[name]
  }
  const opts = { host: req.headers.host, method: req.method, path: req.url, service, region, headers }
  aws4.sign(opts, { accessKeyId: key, secretAccessKey: secret })
  const expected = /Signature=([0-9a-f]{64})/.exec(opts.headers.Authorization)[1]
  const expectedSigned = /SignedHeaders=([^,]+)/.exec(opts.headers.Authorization)[1]
  if (expectedSigned !== signedHeaders) return `signed headers ${signedHeaders}, aws4 signs ${expectedSigned}`
  return expected === signature ? null : 'signature does not match'
}

function takeFault(req) {
  if (!fault || fault.count <= 0) return null
  if (fault.match && !new RegExp(fault.match).test(`${req.method} ${req.url}`)) return null
  fault.seen += 1
  if (fault.seen % fault.every !== 0) return null
  fault.count -= 1
  stats.injected += 1
  return fault.mode
}

function forward(req, body, res, mode) {
  const options = { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers }
  const up = http.request(options, (upRes) => {
    const chunks = []
    upRes.on('data', (c) => chunks.push(c))
    upRes.on('end', () => {
      const data = Buffer.concat(chunks)
      const headers = Object.assign({}, upRes.headers)
      if (mode === 'reset' && data.length > 1) {
        res.writeHead(upRes.statusCode, headers)
        res.write(data.subarray(0, data.length >> 1))
        setTimeout(() => res.socket.destroy(), 10)
        return
      }
      if (mode === 'truncate' && data.length > 1) {
        headers['content-length'] = String(data.length)
        res.writeHead(upRes.statusCode, headers)
        res.write(data.subarray(0, data.length - 1))
        setTimeout(() => res.socket.end(), 10)
        return
      }
      const send = () => { res.writeHead(upRes.statusCode, headers); res.end(data) }
      if (mode === 'slow') setTimeout(send, 1500)
      else send()
    })
  })
  up.on('error', (e) => xmlError(res, 502, 'BadGateway', e.message))
  up.end(body)
}

// Per object path: the tail of a promise chain of its writes, so a
// conditional PUT's check and write are not interleaved with another write.
const writeQueues = new Map()
function serialised(path, work) {
  const tail = (writeQueues.get(path) || Promise.resolve()).then(() => new Promise((resolve) => work(resolve)))
  writeQueues.set(path, tail)
  tail.then(() => { if (writeQueues.get(path) === tail) writeQueues.delete(path) })
}

function objectExists(req, done) {
  const headers = Object.assign({}, req.headers)
  delete headers['content-length']
  delete headers['content-md5']
  delete headers['if-none-match'] // s3rver would answer 304, not the object's existence
  const head = http.request({ host: '127.0.0.1', port: upstreamPort, method: 'HEAD', path: req.url.split('?')[0], headers },
    (r) => { r.resume(); r.on('end', () => done(null, r.statusCode === 200)) })
  head.on('error', (e) => done(e))
  head.end()
}

function conditionalCreate(req) {
  return req.method === 'PUT' && (req.headers['if-none-match'] === '*' || req.headers['x-goog-if-generation-match'] === '0')
}

function forwardWrite(req, body, res, mode) {
  const path = req.url.split('?')[0]
  serialised(path, (finished) => {
    res.on('finish', finished)
    res.on('close', finished)
    if (!conditionalCreate(req)) return forward(req, body, res, mode)
    objectExists(req, (err, exists) => {
      if (err) return xmlError(res, 502, 'BadGateway', err.message)
      if (exists) {
        stats.preconditionFailed += 1
        return xmlError(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
      }
      forward(req, body, res, mode)
    })
  })
}

const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    if (req.url === '/__front/stats') {
      res.writeHead(200, { 'Content-Type': 'application/json' })
      return res.end(JSON.stringify(stats))
    }
    if (req.url === '/__front/region') {
      bucketRegion = JSON.parse(body.toString() || '{}').region || null
      res.writeHead(200)
      return res.end('ok')
    }
    if (req.url === '/__front/credentials') {
      const c = JSON.parse(body.toString())
      temporary.set(c.accessKeyId, { secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken, expiresAt: c.expiresAt })
      res.writeHead(200)
      return res.end('ok')
    }
    if (req.url === '/__front/bearer') {
      const t = JSON.parse(body.toString())
      bearerTokens.set(t.token, t.expiresAt)
      res.writeHead(200)
      return res.end('ok')
    }
    if (req.url === '/__front/fault') {
      const f = JSON.parse(body.toString() || '{}')
      fault = f.mode ? { mode: f.mode, match: f.match || '', count: f.count || 1, every: f.every || 1, seen: 0 } : null
      res.writeHead(200)
      return res.end('ok')
    }
    stats.requests += 1
    const signedRegion = (/Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(req.headers.authorization || '') || [])[1]
    if (bucketRegion && signedRegion !== bucketRegion) {
      stats.regionRedirects += 1
      res.writeHead(301, { 'Content-Type': 'application/xml', 'x-amz-bucket-region': bucketRegion })
      return res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>wrong region</Message></Error>')
    }
    const problem = verify(req, body)
    if (problem) {
      stats.rejected += 1
      return xmlError(res, 403, 'SignatureDoesNotMatch', problem)
    }
    stats.verified += 1
    if (req.headers.authorization.startsWith('Bearer ')) {
      stats.bearerVerified += 1
      signForUpstream(req)
    } else if (temporary.has((/Credential=([^/]+)/.exec(req.headers.authorization) || [])[1])) {
      stats.temporaryVerified += 1
      signForUpstream(req)
    }
    const mode = takeFault(req)
    if (mode === 'error500') return xmlError(res, 500, 'InternalError', 'injected')
    if (mode === 'slowdown') return xmlError(res, 503, 'SlowDown', 'injected')
    if (mode === 'complete-error') {
      res.writeHead(200, { 'Content-Type': 'application/xml' })
      return res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>')
    }
    if (req.method === 'PUT' || req.method === 'DELETE' || req.method === 'POST') return forwardWrite(req, body, res, mode)
    forward(req, body, res, mode)
  })
})
server.listen(listenPort, '127.0.0.1', () => console.log(`front listening on 127.0.0.1:${listenPort} -> ${upstreamPort}`))
