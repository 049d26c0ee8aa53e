/** Makes a private CA and a relay certificate for 127.0.0.1 with openssl (installed by .ci/run). */
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TestCerts { caCert: string, cert: string, key: string }

export function makeTestCerts (dir: string, caName = 'WorldCompute Test CA'): TestCerts {
  const run = (args: string[]): void => { execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] }) }
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.pem')
  const key = join(dir, 'relay.key')
  const csr = join(dir, 'relay.csr')
  const cert = join(dir, 'relay.pem')
  const ext = join(dir, 'relay.ext')
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${caName}`])
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1'])
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  run(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext])
  return { caCert, cert, key }
}
