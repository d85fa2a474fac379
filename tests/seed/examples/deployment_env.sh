# Production secrets
export SECRET_BACKEND=vault
export VAULT_URL=https://vault.prod.example.com
export VAULT_TOKEN=<vault-token>

# Service configuration
export ENV=production
export LOG_LEVEL=INFO
export LOG_FORMAT=json
export METRICS_ENABLED=true
export PROMETHEUS_PORT=9090
