-- 0002 access-path indexes, reverted: drop exactly the indexes 0002 created.

DROP INDEX ix_user_api_keys_user;
DROP INDEX ix_user_profiles_user;
DROP INDEX ix_portfolios_user;
DROP INDEX ix_trading_strategies_user;
DROP INDEX ix_portfolio_positions_portfolio_token;
DROP INDEX ix_user_notifications_event;
DROP INDEX ix_user_notifications_user_status_created;
DROP INDEX ix_system_events_status_created;
DROP INDEX ix_system_events_created;
DROP INDEX ix_trades_strategy;
DROP INDEX ix_trades_signal;
DROP INDEX ix_trades_created;
DROP INDEX ix_trades_token_created;
DROP INDEX ix_trades_portfolio_created;
DROP INDEX ix_trades_user_created;
DROP INDEX ix_trading_signals_status_created;
DROP INDEX ix_trading_signals_token_created;
DROP INDEX ix_trading_signals_strategy_created;
