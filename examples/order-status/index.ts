/**
 * `BATON_FLOWS=examples/order-status ORDER_API_URL=https://shop.example/api npm start` serves
 * flow `order_status` (SPEC section 5b) against the shop's API at `ORDER_API_URL`.
 * @module
 */
import { orderStatusFlow } from './flow.ts';

const apiUrl = process.env.ORDER_API_URL;
if (apiUrl === undefined || !/^https?:\/\/\S+$/.test(apiUrl)) {
  throw new Error(
    `ORDER_API_URL must be the shop API's http(s) URL (got ${apiUrl === undefined ? 'nothing' : `"${apiUrl}"`})`,
  );
}

export default orderStatusFlow({ apiUrl });
export { orderStatusFlow } from './flow.ts';
export type { OrderStatusData, OrderStatusOptions, OrderStatusStep, ShopOrder } from './flow.ts';
