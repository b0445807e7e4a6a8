-- 0001 core tables, reverted: drop the eleven tables, referencing tables before the ones they
-- reference. No CASCADE: an object this migration did not create that depends on these tables makes
-- the revert fail loudly instead of being dropped silently.

DROP TABLE user_notifications;
DROP TABLE system_events;
DROP TABLE trades;
DROP TABLE trading_signals;
DROP TABLE trading_strategies;
DROP TABLE portfolio_positions;
DROP TABLE portfolios;
DROP TABLE wallets;
DROP TABLE user_api_keys;
DROP TABLE user_profiles;
DROP TABLE users;
