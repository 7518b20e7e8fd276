// A real OAuth 2.0 authorization server for tests/dpop.rs,
// tests/introspection.rs and tests/token_exchange.rs: oidc-provider on
// 127.0.0.1 at a free port, issuing access tokens through the
// client_credentials grant: JWTs bound to a DPoP key (RFC 9449) or to a
// client certificate (RFC 8705), and opaque ones it answers token
// introspection (RFC 7662) and revocation for.
//
// oidc-provider has no token exchange (RFC 8693) of its own; it takes
// custom grants, and the one registered below is the exchange a gateway
// uses: an active opaque access token of this server traded for a JWT
// whose audience is UPSTREAM (the only resource it issues for), with the
// subject token's subject and namespace and the gateway as actor (`act`).
// GET /test/exchanges says how many exchanges it granted.
//
// There is no TLS here: the test plays the TLS-terminating proxy and
// passes the client certificate (base64 DER) in `x-test-client-cert`,
// which `getCertificate` reads. Never run this outside a test.
//
// Prints one line, `{"issuer": "http://127.0.0.1:<port>"}`, once it
// listens, then serves until killed.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const RESOURCE = process.env.RESOURCE ?? 'http://mcp.example.test/mcp';
// The upstream a gateway may exchange tokens for, when the test names one.
const UPSTREAM = process.env.UPSTREAM;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
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
      // The gateway, exchanging its callers' tokens for upstream ones.
      client_id: 'gateway',
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials', TOKEN_EXCHANGE],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
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
  extraTokenClaims: (_ctx, token) => {
    if (token.exchangedFor) {
      return { namespace: token.exchangedFor.namespace, act: { sub: token.clientId } };
    }
    return token.clientId === 'opaque-client' ? { namespace: 'acme' } : undefined;
  },
  // An exchanged token speaks for the subject token's subject.
  formats: {
    customizers: {
      jwt(_ctx, token, jwt) {
        if (token.exchangedFor) jwt.payload.sub = token.exchangedFor.sub;
      },
    },
  },
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
            scope: 'tools:read tools:call gateway:connections',
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

let exchanges = 0;

/// The token exchange grant (RFC 8693 §2).
function registerTokenExchange(provider) {
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token_type must name an access token');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    const subject = await provider.ClientCredentials.find(params.subject_token)
      ?? await provider.AccessToken.find(params.subject_token);
    if (!subject || subject.isExpired) {
      throw new errors.InvalidGrant('the subject token is not active');
    }
    if (!UPSTREAM || params.resource !== UPSTREAM) {
      throw new errors.InvalidTarget('no tokens are issued for this resource');
    }
    const token = new provider.ClientCredentials({ client, scope: 'tools:call' });
    token.resourceServer = new provider.ResourceServer(UPSTREAM, {
      audience: UPSTREAM,
      scope: 'tools:call',
      accessTokenTTL: 300,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'ES256' } },
    });
    token.exchangedFor = {
      sub: subject.accountId ?? subject.clientId,
      namespace: subject.extra?.namespace,
    };
    const value = await token.save();
    exchanges += 1;
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope']);
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, config);
  registerTokenExchange(provider);
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/test/exchanges') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ exchanges }));
      return;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Stop with the test: when its end of stdin closes.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
