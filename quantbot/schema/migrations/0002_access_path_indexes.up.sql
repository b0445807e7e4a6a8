-- 0002 access-path indexes: one B-tree per query the dataflow and the platform make, plus one on
-- every foreign-key column that no other index leads with (PostgreSQL does not index referencing
-- columns itself, so without them joins and parent deletes scan the child table).
-- Time-ordered paths put the time column last and descending: "newest first" is how every one of
-- them is read. Plain CREATE INDEX (not CONCURRENTLY): a migration runs in one transaction, and this
-- one runs on tables that 0001 has just created empty.
--
-- Paths already served by a constraint's index get no second index:
--   wallets by user             -> wallets_user_id_wallet_address_key (user_id leads)
--   users by email              -> users_email_key

-- trading_signals: by strategy and time, by token and time, by status (pending first, oldest first)
CREATE INDEX ix_trading_signals_strategy_created ON trading_signals (strategy_id, created_at DESC);
CREATE INDEX ix_trading_signals_token_created ON trading_signals (token_address, created_at DESC);
CREATE INDEX ix_trading_signals_status_created ON trading_signals (status, created_at);

-- trades: by user, portfolio, token (each in time order), by time, and by their signal and strategy
CREATE INDEX ix_trades_user_created ON trades (user_id, created_at DESC);
CREATE INDEX ix_trades_portfolio_created ON trades (portfolio_id, created_at DESC);
CREATE INDEX ix_trades_token_created ON trades (token_address, created_at DESC);
CREATE INDEX ix_trades_created ON trades (created_at DESC);
CREATE INDEX ix_trades_signal ON trades (signal_id);
CREATE INDEX ix_trades_strategy ON trades (strategy_id);

-- system_events: by time, by status (new first, oldest first)
CREATE INDEX ix_system_events_created ON system_events (created_at DESC);
CREATE INDEX ix_system_events_status_created ON system_events (status, created_at);

-- user_notifications: by user and status, newest first; by the event that caused them
CREATE INDEX ix_user_notifications_user_status_created ON user_notifications (user_id, status, created_at DESC);
CREATE INDEX ix_user_notifications_event ON user_notifications (event_id);

-- portfolio_positions: by portfolio and token
CREATE INDEX ix_portfolio_positions_portfolio_token ON portfolio_positions (portfolio_id, token_address);

-- strategies, portfolios, profiles and API keys: by user
CREATE INDEX ix_trading_strategies_user ON trading_strategies (user_id);
CREATE INDEX ix_portfolios_user ON portfolios (user_id);
CREATE INDEX ix_user_profiles_user ON user_profiles (user_id);
CREATE INDEX ix_user_api_keys_user ON user_api_keys (user_id);
