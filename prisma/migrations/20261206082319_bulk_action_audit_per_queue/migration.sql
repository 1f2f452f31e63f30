-- Bulk actions (issue #20) write one operator action per queue they touched, each with that queue's
-- counts, so a key limited to some queues sees the rows of its queues and nothing of the others.
-- The rows of one action share its selection id.
ALTER TABLE "operator_action" ADD COLUMN     "selection_id" UUID;

-- Hand-written predicate (as in partial_indexes): only bulk actions' rows have a selection id.
CREATE INDEX "operator_action_selection_id_idx" ON "operator_action"("selection_id") WHERE "selection_id" IS NOT NULL;

-- Rows written before: their selection id was in details only. A row of an action over several
-- queues names them comma-joined and holds the whole action's counts; it is left as it was (a key
-- limited to some queues never matched it, and still does not: the counts of other queues stay hidden).
UPDATE "operator_action" SET "selection_id" = ("details"->>'selectionId')::uuid
WHERE "action" = 'bulkJobAction' AND "details"->>'selectionId' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
