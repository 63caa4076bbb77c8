<?php

/**
 * Autoloader for the Plasm client without Composer: `require 'clients/php/autoload.php';`
 * maps the `Plasm\` namespace to `src/` (PSR-4), as composer.json does.
 */

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Plasm\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
