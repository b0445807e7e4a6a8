-- 0001 core tables: the eleven tables of the platform's schema document
-- (../shared/seed/database-schema.md, "Core Relational Schema"), copied verbatim and in the
-- document's order, which is also the order their references need. Do not edit once applied:
-- the ledger keeps this file's checksum; change the schema in a new migration instead.

CREATE TABLE users (
    user_id UUID PRIMARY KEY,
    email VARCHAR(255) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(50) NOT NULL DEFAULT 'user',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_login_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'active',
    two_factor_enabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE user_profiles (
    profile_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    display_name VARCHAR(100),
    risk_tolerance VARCHAR(50) DEFAULT 'moderate',
    default_theme VARCHAR(50) DEFAULT 'light',
    notification_preferences JSONB,
    dashboard_layout JSONB,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE user_api_keys (
    key_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    key_name VARCHAR(100) NOT NULL,
    api_key VARCHAR(100) NOT NULL,
    api_secret VARCHAR(255) NOT NULL,
    permissions VARCHAR(255)[] NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'active'
);

CREATE TABLE wallets (
    wallet_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    wallet_address VARCHAR(255) NOT NULL,
    wallet_name VARCHAR(100),
    blockchain VARCHAR(50) NOT NULL DEFAULT 'solana',
    wallet_type VARCHAR(50) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_synced_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'active',
    UNIQUE(user_id, wallet_address)
);

CREATE TABLE portfolios (
    portfolio_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    name VARCHAR(100) NOT NULL,
    description TEXT,
    risk_limit DECIMAL(15, 6),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'active'
);

CREATE TABLE portfolio_positions (
    position_id UUID PRIMARY KEY,
    portfolio_id UUID NOT NULL REFERENCES portfolios(portfolio_id),
    token_address VARCHAR(255) NOT NULL,
    token_symbol VARCHAR(50),
    token_name VARCHAR(255),
    quantity DECIMAL(30, 15) NOT NULL,
    average_entry_price DECIMAL(30, 15),
    current_price DECIMAL(30, 15),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_trade_at TIMESTAMP
);

CREATE TABLE trading_strategies (
    strategy_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    strategy_name VARCHAR(100) NOT NULL,
    strategy_type VARCHAR(50) NOT NULL,
    description TEXT,
    parameters JSONB NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_run_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'active'
);

CREATE TABLE trading_signals (
    signal_id UUID PRIMARY KEY,
    strategy_id UUID REFERENCES trading_strategies(strategy_id),
    signal_type VARCHAR(50) NOT NULL,
    token_address VARCHAR(255) NOT NULL,
    direction VARCHAR(10) NOT NULL,  -- 'buy' or 'sell'
    confidence DECIMAL(5, 2) NOT NULL,
    price_target DECIMAL(30, 15),
    stop_loss DECIMAL(30, 15),
    take_profit DECIMAL(30, 15),
    expiration_time TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    processed_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    metadata JSONB
);

CREATE TABLE trades (
    trade_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    portfolio_id UUID REFERENCES portfolios(portfolio_id),
    signal_id UUID REFERENCES trading_signals(signal_id),
    strategy_id UUID REFERENCES trading_strategies(strategy_id),
    token_address VARCHAR(255) NOT NULL,
    token_symbol VARCHAR(50),
    direction VARCHAR(10) NOT NULL,  -- 'buy' or 'sell'
    quantity DECIMAL(30, 15) NOT NULL,
    price DECIMAL(30, 15) NOT NULL,
    value_usd DECIMAL(15, 2),
    fee_amount DECIMAL(30, 15),
    transaction_hash VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    executed_at TIMESTAMP,
    status VARCHAR(50) NOT NULL,
    execution_details JSONB
);

CREATE TABLE system_events (
    event_id UUID PRIMARY KEY,
    event_type VARCHAR(100) NOT NULL,
    severity VARCHAR(50) NOT NULL,
    source VARCHAR(100) NOT NULL,
    message TEXT NOT NULL,
    details JSONB,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    processed_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'new'
);

CREATE TABLE user_notifications (
    notification_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    event_id UUID REFERENCES system_events(event_id),
    notification_type VARCHAR(100) NOT NULL,
    title VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    importance VARCHAR(50) NOT NULL DEFAULT 'normal',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    read_at TIMESTAMP,
    status VARCHAR(50) NOT NULL DEFAULT 'unread'
);
