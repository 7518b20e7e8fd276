// A real OAuth 2.0 authorization server for tests/dpop.rs and
// tests/introspection.rs: oidc-provider on 127.0.0.1 at a free port,
// issuing access tokens through the client_credentials grant: JWTs bound to
// a DPoP key (RFC 9449) or to a client certificate (RFC 8705), and opaque
// ones it answers token introspection (RFC 7662) and revocation for.
//
// There is no TLS here: the test plays the TLS-terminating proxy and
// passes the client certificate (base64 DER) in `x-test-client-cert`,
// which `getCertificate` reads. Never run this outside a test.
//
// Prints one line, `{"issuer": "http://127.0.0.1:<port>"}`, once it
// listens, then serves until killed.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const RESOURCE = process.env.RESOURCE ?? 'http://mcp.example.test/mcp';
const CLIENT_SECRET = 'a-test-client-secret-of-some-length';
// The public JWK of the resource server's private_key_jwt client, when the
// test gives one.
const SERVER_JWK = process.env.SERVER_JWK ? JSON.parse(process.env.SERVER_JWK) : undefined;

const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ format: 'jwk' });

const config = {
  clients: [
    {
      // Gets opaque access tokens (with a namespace claim).
      client_id: 'opaque-client',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    {
      // The resource server, asking about tokens with its secret.
      client_id: 'mcp-server',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    ...(SERVER_JWK ? [{
      // The resource server, asking with a signed assertion.
      client_id: 'mcp-server-key',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      id_token_signed_response_alg: 'ES256',
      jwks: { keys: [SERVER_JWK] },
    }] : []),
    {
      client_id: 'dpop-client',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // The provider's only key is an EC one.
      id_token_signed_response_alg: 'ES256',
      dpop_bound_access_tokens: true,
    },
    {
      client_id: 'mtls-client',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // The provider's only key is an EC one.
      id_token_signed_response_alg: 'ES256',
      tls_client_certificate_bound_access_tokens: true,
    },
  ],
  jwks: { keys: [{ ...signing, kid: 'test-signing-key', alg: 'ES256', use: 'sig' }] },
  // Opaque tokens carry the tenant, as introspection answers show it.
  extraTokenClaims: (_ctx, token) => (
    token.clientId === 'opaque-client' ? { namespace: 'acme' } : undefined
  ),
  cookies: { keys: ['a-cookie-key-for-tests-only'] },
  ttl: { ClientCredentials: () => 300 },
  features: {
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // Any authenticated client may ask (the resource server is one).
      allowedPolicy: (ctx) => ctx.oidc.client.clientAuthMethod !== 'none',
    },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const der = ctx.get('x-test-client-cert');
        if (!der) return undefined;
        return `-----BEGIN CERTIFICATE-----\n${der}\n-----END CERTIFICATE-----`;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource, client) => {
        if (resource !== RESOURCE) throw new Error('unknown resource');
        if (client.clientId === 'opaque-client') {
          return {
            scope: 'tools:read tools:call',
            audience: RESOURCE,
            accessTokenTTL: 300,
            accessTokenFormat: 'opaque',
          };
        }
        return {
          scope: 'tools:read tools:call',
          audience: RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, config);
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Stop with the test: when its end of stdin closes.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
