<?php
// Calls Flowmailer's PHP SDK against a Sluice server, as a customer's code would, and prints
// one line per call: OK with what the SDK made of the answer, or FAIL with what it threw.
// Arguments: base URL, account id, client id, client secret.
require __DIR__ . '/autoload.php';
use Flowmailer\API\Flowmailer;
use Flowmailer\API\Parameter\ReferenceRange;
use Flowmailer\API\Parameter\ItemsRange;
use Flowmailer\API\Parameter\DateRange;
use Flowmailer\API\Model as M;
use Flowmailer\API\Collection as C;
use Nyholm\Psr7\Factory\Psr17Factory;
use Symfony\Component\HttpClient\Psr18Client;

[$_, $base, $account, $id, $secret] = $argv;
$f = new Psr17Factory();
$client = new Psr18Client(null, $f, $f);
$fm = Flowmailer::init($account, $id, $secret, ['base_url' => $base, 'auth_base_url' => $base], null, null, $client, $client, $f, $f, $f);
$results = [];
function call($name, callable $fn) {
    global $results;
    try {
        $r = $fn();
        $show = is_object($r) ? get_class($r) . (method_exists($r, 'count') ? '[' . $r->count() . ']' : '') : var_export($r, true);
        echo "OK   $name: " . substr($show, 0, 150) . "\n";
        $results[$name] = true;
        return $r;
    } catch (\Throwable $e) {
        echo "FAIL $name: " . get_class($e) . ': ' . substr(str_replace("\n", ' ', $e->getMessage()), 0, 300) . "\n";
        $results[$name] = false;
        return null;
    }
}
$range = new DateRange(new \DateTimeImmutable('2020-01-01T00:00:00Z'), new \DateTimeImmutable('2030-01-01T00:00:00Z'));

$sub = (new M\SubmitMessage())->setMessageType('EMAIL')->setRecipientAddress('ann@example.net')
    ->setSenderAddress('app@example.com')->setSubject('Hello from the SDK')->setHtml('<p>Hi <a href="https://example.com/x">x</a></p>')
    ->setText('Hi')->setTags(['sdk', 'walk'])->setData((object) ['order' => (object) ['id' => 7]]);
$msgId = call('submitMessage', fn () => $fm->submitMessage($sub));
for ($n = 0; $n < 3; $n++) { call('submitMessage(more)', fn () => $fm->submitMessage((clone $sub)->setSubject("more $n"))); }
sleep(2);
$msgs = call('getMessages', fn () => $fm->getMessages(new ReferenceRange(2), null, null, null, true, true, true, true, $range));
if ($msgs) {
    $next = $msgs->getNextRange();
    echo "     nextRange: " . ($next ? (string) $next : 'none') . "\n";
    if ($next) { call('getMessages(next page)', fn () => $fm->getMessages($next)); }
    foreach ($msgs as $m) { echo "     message " . $m->getId() . " status " . $m->getStatus() . " subject " . $m->getSubject() . "\n"; }
}
// The SDK answers a submission with the response whose body it made the new id of.
$mid = $msgId !== null ? (string) $msgId : 'none';
echo "     submitted id: $mid\n";
call('getMessage', fn () => $fm->getMessage($mid, true));
call('getMessageEvents', fn () => $fm->getMessageEvents(new ReferenceRange(10), null, null, null, true, $range));
call('getMessageArchive', fn () => $fm->getMessageArchive($mid, true, true));
call('getMessageErrorArchive', fn () => $fm->getMessageErrorArchive($mid, true));
call('getMessageHolds', fn () => $fm->getMessageHolds(new ItemsRange(0, 10), $range));
call('getUndeliveredMessages', fn () => $fm->getUndeliveredMessages(new ReferenceRange(10), $range, null, null, true, true, true, true));
call('getRecipientMessages', fn () => $fm->getRecipientMessages('ann@example.net', new ReferenceRange(10)));
call('getSenderMessages', fn () => $fm->getSenderMessages('app@example.com', new ReferenceRange(10)));
call('getTagMessages', fn () => $fm->getTagMessages('sdk', new ReferenceRange(10)));
call('getRecipient', fn () => $fm->getRecipient('ann@example.net'));
call('getMessageStats', fn () => $fm->getMessageStats($range));
call('getMessageStats(daily, a month)', fn () => $fm->getMessageStats(new DateRange(new \DateTimeImmutable('-20 days'), new \DateTimeImmutable('+10 days')), null, 86400));
call('simulateMessage', fn () => $fm->simulateMessage((new M\SimulateMessage())->setMessageType('EMAIL')->setRecipientAddress('ann@example.net')->setSenderAddress('app@example.com')->setSourceId('1')->setSubject('s')->setText('t')));
call('resendMessage', fn () => $fm->resendMessage($mid, (new M\ResendMessage())->setRecipientAddress('bob@example.net')));

$flows = call('getFlows', fn () => $fm->getFlows());
$flowId = $flows && $flows->count() ? $flows->first()->getId() : '1';
call('getFlow', fn () => $fm->getFlow($flowId));
call('getFlowMessages', fn () => $fm->getFlowMessages($flowId, $range, new ItemsRange(0, 10), true, true, true));
call('getFlowStats', fn () => $fm->getFlowStats($flowId, $range));
call('getFlowRule', fn () => $fm->getFlowRule($flowId));
call('getFlowRules', fn () => $fm->getFlowRules());
call('getFlowTemplates', fn () => $fm->getFlowTemplates());
$tpl = call('createTemplate(freemarker)', fn () => $fm->createTemplate((new M\Template())->setDescription('sdk-template')->setMimeType('text/html')->setTemplateEngine('freemarker-2.3.20')->setData('<p>${name}</p>')));
$flow = (new M\Flow())->setDescription('sdk flow')->setSteps(new C\FlowStepCollection([(new M\FlowStep())->setType('archive')->setArchive((new M\FlowStepArchive())->setOnlineLink(true)->setRetention('P1M'))]));
$newFlow = call('createFlow', fn () => $fm->createFlow($flow));
if ($newFlow) {
    $got = call('getFlow(new)', fn () => $fm->getFlow($newFlow));
    if ($got) { call('updateFlow', fn () => $fm->updateFlow($newFlow, $got)); }
    call('updateFlowRule', fn () => $fm->updateFlowRule($newFlow, (new M\FlowRuleSimple())->setFlowId($newFlow)->setFlowSelector('sdk')));
    call('getFlowRule(new)', fn () => $fm->getFlowRule($newFlow));
    call('updateFlowRule(clear)', fn () => $fm->updateFlowRule($newFlow, (new M\FlowRuleSimple())->setFlowId($newFlow)));
    call('deleteFlow', fn () => $fm->deleteFlow($newFlow));
}

$sources = call('getSources', fn () => $fm->getSources());
$sourceId = $sources && $sources->count() ? $sources->first()->getId() : '1';
$src = call('getSource', fn () => $fm->getSource($sourceId));
call('getSourceMessages', fn () => $fm->getSourceMessages($sourceId, $range, new ItemsRange(0, 10), true, true, true));
call('getSourceStats', fn () => $fm->getSourceStats($sourceId, $range));
call('getSourceUsers', fn () => $fm->getSourceUsers($sourceId));
$newSource = call('createSource', fn () => $fm->createSource((new M\Source())->setDescription('sdk source')->setType('API')->setTlsRequired(false)));
if ($newSource) {
    $s = call('getSource(new)', fn () => $fm->getSource($newSource));
    if ($s) { call('updateSource', fn () => $fm->updateSource($newSource, $s->setDescription('sdk source 2'))); }
    $user = call('createSourceUsers', fn () => $fm->createSourceUsers($newSource, (new M\Credentials())->setProtocol('SMTP')->setSourceId($newSource)));
    $users = call('getSourceUsers(new)', fn () => $fm->getSourceUsers($newSource));
    if ($users && $users->count()) {
        $uid = $users->first()->getId();
        $u = call('getSourceUser', fn () => $fm->getSourceUser($newSource, $uid));
        if ($u) { call('updateSourceUser', fn () => $fm->updateSourceUser($newSource, $uid, $u->setPassword('a-new-password-of-length'))); }
        call('deleteSourceUser', fn () => $fm->deleteSourceUser($newSource, $uid));
    }
    $cred = call('createApiCredentials', fn () => $fm->createApiCredentials((new M\Credentials())->setProtocol('OAUTH')->setSourceId($newSource)));
    call('getApiCredentials', fn () => $fm->getApiCredentials());
    if ($cred) {
        $cid = $cred->getClientId() ?? $cred->getId();
        $c = call('getClientApiCredentials', fn () => $fm->getClientApiCredentials($cid));
        if ($c) { call('updateClientApiCredentials', fn () => $fm->updateClientApiCredentials($cid, $c)); }
        call('deleteClientApiCredentials', fn () => $fm->deleteClientApiCredentials($cid));
    }
    call('deleteSource', fn () => $fm->deleteSource($newSource));
}

call('getSenderDomains', fn () => $fm->getSenderDomains());
$sd = call('createSenderDomain', fn () => $fm->createSenderDomain((new M\SenderDomain())->setSenderDomain('sdk.example.com')));
call('getSenderDomainsByDomain', fn () => $fm->getSenderDomainsByDomain('sdk.example.com'));
call('validateSenderDomain', fn () => $fm->validateSenderDomain((new M\SenderDomain())->setSenderDomain('sdk.example.com')));
if ($sd) {
    $d = call('getSenderDomain', fn () => $fm->getSenderDomain($sd));
    if ($d) { call('updateSenderDomain', fn () => $fm->updateSenderDomain($sd, $d)); }
    call('deleteSenderDomain', fn () => $fm->deleteSenderDomain($sd));
}

call('getFilters', fn () => $fm->getFilters(new ReferenceRange(10)));
call('getTemplates', fn () => $fm->getTemplates());
$t = call('createTemplate(minijinja)', fn () => $fm->createTemplate((new M\Template())->setDescription('sdk-html')->setMimeType('text/html')->setTemplateEngine('minijinja')->setData('<p>Hi {{ name }}</p>')));
$templates = call('getTemplates(after)', fn () => $fm->getTemplates());
if ($templates && $templates->count()) {
    $tid = $templates->first()->getId();
    $tt = call('getTemplate', fn () => $fm->getTemplate($tid));
    if ($tt) { call('updateTemplate', fn () => $fm->updateTemplate($tid, $tt)); }
    call('deleteTemplate', fn () => $fm->deleteTemplate($tid));
}

$ef = (new M\EventFlow())->setDescription('sdk hook')->setSteps(new C\FlowStepCollection([(new M\FlowStep())->setType('externalData')->setExternalData((new M\FlowStepExternalData())->setUrlTemplate('https://hooks.example.com/in')->setRequestMethod('POST'))]));
$efId = call('createEventFlow', fn () => $fm->createEventFlow($ef));
call('getEventFlows', fn () => $fm->getEventFlows());
call('getEventFlowRules', fn () => $fm->getEventFlowRules());
call('getEventFlowRulesHierarchy', fn () => $fm->getEventFlowRulesHierarchy());
if ($efId) {
    $e = call('getEventFlow', fn () => $fm->getEventFlow($efId));
    if ($e) { call('updateEventFlow', fn () => $fm->updateEventFlow($efId, $e)); }
    call('updateEventFlowRule', fn () => $fm->updateEventFlowRule($efId, (new M\EventFlowRuleSimple())->setEventFlowId($efId)->setEventType('DELIVERED')));
    call('getEventFlowRule', fn () => $fm->getEventFlowRule($efId));
    call('deleteEventFlow', fn () => $fm->deleteEventFlow($efId));
}
call('getUsers', fn () => $fm->getUsers());
call('getRoles', fn () => $fm->getRoles());

$ok = count(array_filter($results)); $all = count($results);
echo "\n$ok of $all calls answered as the SDK reads them\n";
